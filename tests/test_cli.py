"""``python -m cae_core cluster`` end to end, and its one-line errors for bad bundles."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from cae_core.inputs.bundle import OPTIONAL_KEYS, REQUIRED_KEYS, load_bundle, save_bundle
from cae_core.cli import main
from cae_core.inputs.synthetic import planted_bundle


def cae(*args: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process: exit code and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "cae_core", *args], capture_output=True, text=True, timeout=300)


def cae_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same entry point without a process start (importing torch costs seconds each time)."""
    returncode = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, returncode, captured.out, captured.err)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return save_bundle(planted_bundle(n_images=300, n_classes=3, n_nouns=60, n_captions=60, seed=2),
                       tmp_path_factory.mktemp("bundle") / "planted.npz")


def test_cluster_writes_assignments_metrics_and_named_clusters(bundle_path, tmp_path):
    completed = cae("cluster", "--features", str(bundle_path), "--clusters", "3", "--out", str(tmp_path), "--quiet")
    assert completed.returncode == 0, completed.stderr
    table = pd.read_csv(tmp_path / "assignments.csv", keep_default_na=False)
    assert list(table.columns) == ["index", "image_id", "cluster", "label"]
    assert len(table) == 300 and set(table["cluster"]) == {0, 1, 2}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["method"] == "cae" and metrics["n_images"] == 300 and metrics["n_clusters"] == 3
    # the scores are the files' own: recomputed from assignments.csv by scikit-learn
    assert metrics["nmi"] == pytest.approx(normalized_mutual_info_score(table["label"], table["cluster"]))
    assert metrics["ari"] == pytest.approx(adjusted_rand_score(table["label"], table["cluster"]))
    assert metrics["acc"] == pytest.approx(1.0)  # three planted classes, well separated
    assert {"semantic_space", "noun_alignment", "kmeans"} <= set(metrics["seconds"])
    clusters = json.loads((tmp_path / "clusters.json").read_text())
    assert [entry["cluster"] for entry in clusters] == [0, 1, 2]
    assert sum(entry["size"] for entry in clusters) == 300
    assert all(entry["nouns"] and entry["captions"] for entry in clusters)


def test_same_seed_gives_identical_files(bundle_path, tmp_path):
    for name in ("a", "b"):
        assert main(["cluster", "--features", str(bundle_path), "--clusters", "3", "--method", "cae-softmax",
                     "--seed", "7", "--out", str(tmp_path / name), "--quiet"]) == 0
    assert (tmp_path / "a" / "assignments.csv").read_bytes() == (tmp_path / "b" / "assignments.csv").read_bytes()


def test_unlabelled_bundle_leaves_label_column_empty(tmp_path):
    bundle = planted_bundle(n_images=60, n_classes=2, n_nouns=20, n_captions=20)
    bundle.labels = None
    path = save_bundle(bundle, tmp_path / "unlabelled.npz")
    assert main(["cluster", "--features", str(path), "--clusters", "2", "--method", "clip-kmeans",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "out" / "assignments.csv", keep_default_na=False)
    assert set(table["label"]) == {""}
    assert "acc" not in json.loads((tmp_path / "out" / "metrics.json").read_text())


def _broken(tmp_path, name: str, **changes) -> str:
    arrays = dict(np.load(_broken.source))
    arrays.update(changes)
    for key, value in list(arrays.items()):
        if value is None:
            del arrays[key]
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("name, changes, message", [
    ("missing", {"captions": None}, "lacks the key(s) captions"),
    ("nan", {"image_embeddings": np.full((300, 128), np.nan)}, "image_embeddings contains NaN"),
    ("inf", {"noun_embeddings": np.full((60, 128), np.inf)}, "noun_embeddings contains NaN or infinite"),
    ("dimension", {"caption_embeddings": np.ones((60, 7))}, "caption_embeddings has dimension 7 but image_embeddings has 128"),
    ("rows", {"nouns": np.array(["a", "b"])}, "nouns has 2 entries but noun_embeddings has 60 rows"),
    ("labels", {"labels": np.zeros(5, dtype=int)}, "labels has shape (5,) but image_embeddings has 300 rows"),
    ("empty", {"image_embeddings": np.zeros((0, 128))}, "image_embeddings is empty"),
])
def test_bad_bundles_fail_with_one_line_and_exit_code_2(bundle_path, tmp_path, capsys, name, changes, message):
    _broken.source = bundle_path
    completed = cae_in_process(capsys, "cluster", "--features", _broken(tmp_path, name, **changes), "--clusters", "3",
                    "--out", str(tmp_path / "out"))
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and "Traceback" not in completed.stderr
    assert message in completed.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("args, message", [
    (["--clusters", "301"], "cannot make 301 clusters from 300 images"),
    (["--clusters", "0"], "must be a positive integer"),
])
def test_impossible_requests_fail_with_exit_code_2(bundle_path, tmp_path, capsys, args, message):
    completed = cae_in_process(capsys, "cluster", "--features", str(bundle_path), *args, "--out", str(tmp_path))
    assert completed.returncode == 2 and message in completed.stderr and "Traceback" not in completed.stderr


def test_missing_or_unreadable_bundle(tmp_path):
    completed = cae("cluster", "--features", str(tmp_path / "none.npz"), "--clusters", "2", "--out", str(tmp_path))
    assert completed.returncode == 2 and "features bundle not found" in completed.stderr
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    completed = cae("cluster", "--features", str(tmp_path / "junk.npz"), "--clusters", "2", "--out", str(tmp_path))
    assert completed.returncode == 2 and "not a readable .npz" in completed.stderr


def test_bundle_round_trip_keeps_everything(tmp_path):
    bundle = planted_bundle(n_images=50, n_classes=3, n_nouns=20, n_captions=25, seed=4)
    bundle.image_ids = np.array([f"class {label}/{index:03d}.png" for index, label in enumerate(bundle.labels)])
    bundle.noun_glosses = np.array([f"gloss of {noun}" for noun in bundle.nouns])
    bundle.caption_image_ids = bundle.image_ids[np.arange(25) % 50]
    loaded = load_bundle(save_bundle(bundle, tmp_path / "round.npz"))
    for key in REQUIRED_KEYS + OPTIONAL_KEYS:
        expected, found = getattr(bundle, key), getattr(loaded, key)
        if expected is None:
            assert found is None, key
        else:
            assert found.dtype.kind == expected.dtype.kind, key
            np.testing.assert_array_equal(found, expected, err_msg=key)  # bit-identical, not merely close
    assert loaded.metadata == bundle.metadata and loaded.metadata["synthetic"] is True
    assert loaded.captions_of(3).tolist() == [3]


def test_sweep_on_a_planted_bundle_writes_a_tidy_table(bundle_path, tmp_path, capsys):
    completed = cae_in_process(capsys, "sweep", "--features", str(bundle_path), "--clusters", "3", "--out",
                               str(tmp_path), "--quiet", "--methods", "cae,cae-softmax", "--seeds", "0,1",
                               "--fusion", "agreement,paper", "--gamma", "0.01")
    assert completed.returncode == 0, completed.stderr
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert len(table) == 2 * 2 * 2  # methods x fusion x seeds
    assert set(zip(table["method"], table["fusion"], table["seed"])) == {
        (method, fusion, seed) for method in ("cae", "cae-softmax") for fusion in ("agreement", "paper") for seed in (0, 1)}
    assert set(table["noun_converged"]) == {True} and table["gamma"].eq(0.01).all()
    assert {"weight_image_mean", "weight_noun_sd", "caption_iterations", "fused_between"} <= set(table)
    assert "sweep.md" in completed.stdout and "| cae" in (tmp_path / "sweep.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--epsilon", "0,0.05"], "epsilon must be positive"),
    (["--methods", "cae,kmeans++"], "unknown method(s) kmeans++"),
    (["--fusion", "sum"], "unknown fusion 'sum'"),
])
def test_sweep_rejects_a_bad_grid_before_running(bundle_path, tmp_path, capsys, args, message):
    completed = cae_in_process(capsys, "sweep", "--features", str(bundle_path), "--clusters", "3",
                               "--out", str(tmp_path / "out"), "--quiet", *args)
    assert completed.returncode == 2 and message in completed.stderr
    assert not (tmp_path / "out").exists()
