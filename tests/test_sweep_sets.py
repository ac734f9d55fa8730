"""``python -m cae_core sweep`` over several bundles: K from each bundle's labels, the comparison files,
and the one-line errors raised before anything runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cae_core.config import data_dir
from cae_core.inputs.bundle import save_bundle
from cae_core.inputs.synthetic import planted_bundle
from test_cli import cae, cae_in_process

REAL = ("stl10-vitb16", "food101-vitb32")
FILES = ("sweep.csv", "sweep_summary.csv", "paired.csv", "ranks.csv", "sweep.md", "sweep.html")


def test_sweep_over_two_real_bundles_with_k_from_their_labels(tmp_path):
    paths = [data_dir() / "embeddings" / name / f"{name}.npz" for name in REAL]  # shared data: never skipped
    completed = cae("sweep", "--features", *map(str, paths), "--clusters", "labels", "--out", str(tmp_path),
                    "--methods", "clip-kmeans,tac-notrain", "--seeds", "0,1")
    assert completed.returncode == 0, completed.stderr
    assert all((tmp_path / name).is_file() for name in FILES)
    for name in REAL:  # one progress line per bundle and seed
        assert all(f"[sweep {name}, seed {seed}]" in completed.stderr for seed in (0, 1))

    table = pd.read_csv(tmp_path / "sweep.csv")
    assert list(table.columns[:4]) == ["bundle", "n_clusters", "method", "seed"]
    assert len(table) == 2 * 2 * 2 and set(table["bundle"]) == set(REAL)
    for name, path in zip(REAL, paths):
        with np.load(path) as data:
            labels = data["labels"]
        classes = len(np.unique(labels[labels >= 0]))
        assert classes == 10 and (table.loc[table["bundle"] == name, "n_clusters"] == classes).all()

    paired = pd.read_csv(tmp_path / "paired.csv")
    assert paired["bundle"].tolist() == [*REAL, "(all)"] and (paired["method"] == "tac-notrain").all()
    assert (paired["reference"] == "clip-kmeans").all() and paired["pairs"].tolist() == [2, 2, 4]
    by_run = table.set_index(["bundle", "seed", "method"])["acc"]
    differences = {name: [by_run[name, seed, "tac-notrain"] - by_run[name, seed, "clip-kmeans"] for seed in (0, 1)]
                   for name in REAL}
    expected = [np.mean(differences[name]) for name in REAL] + [np.mean(sum(differences.values(), []))]
    assert paired["mean_diff"].to_numpy() == pytest.approx(expected)
    assert (paired["ci_low"] <= paired["mean_diff"] + 1e-12).all()
    assert (paired["mean_diff"] <= paired["ci_high"] + 1e-12).all()

    ranks = pd.read_csv(tmp_path / "ranks.csv").set_index("method")
    assert set(ranks.index) == {"clip-kmeans", "tac-notrain"} and (ranks["bundles"] == 2).all()
    assert ranks["average_rank"].sum() == pytest.approx(3)  # ranks 1 and 2 on each bundle
    assert ranks.loc["tac-notrain", ["wins", "ties", "losses"]].sum() == 2
    assert ranks.loc["clip-kmeans", ["wins", "ties", "losses"]].isna().all()

    summary = pd.read_csv(tmp_path / "sweep_summary.csv")
    assert len(summary) == 4 and (summary["seeds"] == 2).all()
    markdown = (tmp_path / "sweep.md").read_text()
    assert "stl10-vitb16 (10)" in markdown and "food101-vitb32 (10)" in markdown and "(all)" in markdown
    html = (tmp_path / "sweep.html").read_text()
    assert html.count("Plotly.newPlot") == 2 and "Paired differences against clip-kmeans" in html


@pytest.fixture(scope="module")
def planted_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles")
    labelled = planted_bundle(n_images=150, n_classes=3, n_nouns=40, n_captions=40, seed=1)
    broken = folder / "broken.npz"
    broken.write_bytes(b"not a zip file")
    return {"labelled": save_bundle(labelled, folder / "labelled.npz"),
            "unlabelled": save_bundle(dataclasses.replace(labelled, labels=None), folder / "unlabelled.npz"),
            "broken": broken}


@pytest.mark.parametrize("bundles, extra, message", [
    (["labelled", "unlabelled"], [], "bundle unlabelled has no labels"),
    (["labelled", "broken"], [], "broken.npz is not a readable .npz features bundle"),
    (["labelled"], ["--reference", "laic-notrain"], "the reference 'laic-notrain' is not among the methods swept"),
    (["labelled", "labelled"], [], "two bundles are named labelled"),
])
def test_a_bad_bundle_or_reference_stops_the_sweep_before_any_run(planted_paths, tmp_path, capsys, bundles, extra,
                                                                  message):
    completed = cae_in_process(capsys, "sweep", "--features", *(str(planted_paths[name]) for name in bundles),
                               "--clusters", "labels", "--out", str(tmp_path / "out"),
                               "--methods", "cae,clip-kmeans", "--seeds", "0", *extra)
    assert completed.returncode == 2 and message in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1  # one line, and no run's progress before it
    assert not (tmp_path / "out").exists()


def test_a_number_of_clusters_still_applies_to_every_bundle(planted_paths, tmp_path, capsys):
    completed = cae_in_process(capsys, "sweep", "--features", str(planted_paths["labelled"]),
                               str(planted_paths["unlabelled"]), "--clusters", "4", "--out", str(tmp_path), "--quiet",
                               "--methods", "cae,clip-kmeans", "--seeds", "0,1", "--metric", "nmi")
    assert completed.returncode == 0, completed.stderr
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert (table["n_clusters"] == 4).all() and set(table["bundle"]) == {"labelled", "unlabelled"}
    assert table.loc[table["bundle"] == "unlabelled", "nmi"].isna().all()
    # the comparison uses the bundles with the metric: the labelled one only
    paired = pd.read_csv(tmp_path / "paired.csv")
    assert paired["bundle"].tolist() == ["labelled", "(all)"] and (paired["metric"] == "nmi").all()
    assert (pd.read_csv(tmp_path / "ranks.csv")["bundles"] == 1).all()
