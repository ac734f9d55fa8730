"""The run store: records that reopen exactly, survive restarts, kills, concurrent writers and damage;
the ``runs`` commands; the Parquet export read back by pyarrow (and Embedding Atlas's loader where it
is installed)."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cae_core.method import available_methods
from cae_core import CaeConfig, CaeError, load_bundle, planted_bundle, run_method, run_methods, save_bundle
from cae_core.runs import RunStore, add_umap, compare_runs, export_table

REPO = Path(__file__).resolve().parents[1]
METHODS = ("cae", "laic-notrain", "cae-no-nouns", "tac-notrain", "clip-kmeans")


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory) -> Path:
    bundle = planted_bundle(n_images=160, n_classes=4, dim=32, n_nouns=60, n_captions=80, seed=3)
    bundle.metadata["image_root"] = "pictures"
    return save_bundle(bundle, tmp_path_factory.mktemp("bundle") / "planted160.npz")


@pytest.fixture(scope="module")
def made(bundle_file):
    """The bundle as read from its file and every kind of run on it (one space and alignment per bank)."""
    bundle = load_bundle(bundle_file)
    return bundle, run_methods(bundle, list(METHODS), 4, seed=0)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("CAE_RUNS_DIR", str(path))
    return path


def cae(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "cae_core", *args], capture_output=True, text=True,
                               timeout=300, cwd=REPO)
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


def recorded_ids(stderr: str) -> dict[str, str]:
    """method -> run id, from the ``recorded run ID (method)`` lines a command prints."""
    return {method: run_id for run_id, method in re.findall(r"recorded run (\S+) \(([\w-]+)\)", stderr)}


def assert_same_run(opened, original) -> None:
    """Every array a page draws is identical, dtype included."""
    assert opened.method == original.method and opened.n_clusters == original.n_clusters
    assert opened.metrics == original.metrics and opened.config == original.config
    for name in ("assignments", "features"):
        assert getattr(opened, name).dtype == getattr(original, name).dtype
        assert np.array_equal(getattr(opened, name), getattr(original, name)), name
    assert set(opened.aligned) == set(original.aligned)
    for bank, part in original.aligned.items():
        for name in ("correspondence", "top_text", "top_weight", "top_similarity", "text_usage"):
            mine, theirs = getattr(opened.aligned[bank].alignment, name), getattr(part.alignment, name)
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), (bank, name)
        assert opened.aligned[bank].alignment.n_iter == part.alignment.n_iter
    assert (opened.fusion is None) == (original.fusion is None)
    if original.fusion is not None:
        for name in ("weights", "features", "prototype_cosine", "offset"):
            assert np.array_equal(getattr(opened.fusion, name), getattr(original.fusion, name)), name
        assert opened.fusion.modalities == original.fusion.modalities
    assert (opened.semantic_space is None) == (original.semantic_space is None)
    if original.semantic_space is not None:
        assert np.array_equal(opened.semantic_space.centres, original.semantic_space.centres)
        assert np.array_equal(opened.semantic_space.centre_of_image, original.semantic_space.centre_of_image)
        for bank, selection in original.semantic_space.selections.items():
            for name in ("bank_index", "centre", "score", "texts", "embeddings", "bank_centre", "bank_score"):
                mine = getattr(opened.semantic_space.selections[bank], name)
                assert mine.dtype == getattr(selection, name).dtype
                assert np.array_equal(mine, getattr(selection, name)), (bank, name)
    assert [entry.to_dict() for entry in opened.cluster_texts] == [entry.to_dict() for entry in original.cluster_texts]


def test_every_kind_of_run_reopens_exactly_after_a_restart(made, bundle_file, runs_dir):
    bundle, results = made
    ids = RunStore().add_all(results, bundle, source="api", bundle_path=bundle_file)
    store = RunStore()  # a new process would make a new store: nothing is held in memory
    listed = store.runs()
    assert sorted(listed["id"]) == sorted(ids.values())
    assert set(listed["dataset"]) == {"planted160"} and listed["batch"].nunique() == 1
    for method, run_id in ids.items():
        run = store.get(run_id)
        assert_same_run(run.result(), results[method])  # the bundle found again by its recorded path


def test_a_run_made_with_cluster_opens_with_identical_clusters_weights_and_correspondences(made, bundle_file,
                                                                                          runs_dir, tmp_path):
    completed = cae("cluster", "--features", str(bundle_file), "--clusters", "4", "--out", str(tmp_path / "out"),
                    "--quiet", "--epsilon", "0.1")
    run_id = recorded_ids(completed.stderr)["cae"]
    bundle, _ = made
    opened = RunStore().get(run_id).result()
    # the same request made in this process: same seed and inputs give the same run
    again = run_method(bundle, "cae", 4, config=opened.config, seed=0)
    assert opened.config.epsilon == 0.1
    assert_same_run(opened, again)
    assert cae("cluster", "--features", str(bundle_file), "--clusters", "4", "--out", str(tmp_path / "out"),
               "--quiet", "--no-record").stderr.count("recorded run") == 0
    assert len(RunStore().runs()) == 1


def test_a_crash_before_the_rename_leaves_no_record(made, runs_dir, monkeypatch):
    bundle, results = made
    store = RunStore()
    kept = store.add(results["clip-kmeans"], bundle, source="api", bundle_name="kept")

    def crash(self, target):
        raise OSError("simulated crash between writing the record and renaming it into place")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="simulated crash"):
        patch.setattr(Path, "rename", crash)
        store.add(results["cae"], bundle, source="api")
    assert list(RunStore().runs()["id"]) == [kept]
    assert [entry.name for entry in (runs_dir / "records").iterdir()] == [kept]  # the temporary folder is gone


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import cae_core.runs.store as store
from cae_core import load_bundle, run_method

bundle = load_bundle(sys.argv[1])
result = run_method(bundle, "clip-kmeans", 4)
kill = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "before-rename":
    Path.rename = kill  # the record is written in its temporary folder, never renamed
else:
    store.RunStore._index = kill  # renamed into place, never indexed
store.RunStore().add(result, bundle, source="api", bundle_path=sys.argv[1])
"""


@pytest.mark.parametrize("moment", ["before-rename", "before-index"])
def test_a_writer_killed_mid_write_leaves_no_half_record(bundle_file, runs_dir, moment):
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(bundle_file), moment], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    left = sorted(entry.name for entry in (runs_dir / "records").iterdir())
    listed = RunStore().runs()
    if moment == "before-rename":
        assert len(left) == 1 and left[0].endswith(".partial")  # the half record, hidden
        assert listed.empty
    else:
        assert list(listed["id"]) == left  # the whole record, indexed by the next reader
        assert RunStore().get(left[0]).assignments.shape == (160,)


def _write_runs(root: str, method: str, result, bundle, n: int, barrier, out) -> None:
    barrier.wait()  # both processes start writing together
    store = RunStore(Path(root))
    out.put((method, [store.add(result, bundle, source="api", bundle_name=f"writer-{os.getpid()}")
                      for _ in range(n)]))


def test_two_processes_writing_at_once_both_land_and_the_index_agrees(made, runs_dir):
    bundle, results = made
    # fork: the writers inherit the barrier and the queue, and start without re-importing this session
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(2), context.Queue()
    writers = [context.Process(target=_write_runs, args=(str(runs_dir), method, results[method], bundle, 6,
                                                           barrier, out))
               for method in ("cae", "clip-kmeans")]
    for writer in writers:
        writer.start()
    by_method = dict(out.get(timeout=600) for _ in writers)  # a writer that dies fails here, never hangs
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    written = [by_method["cae"], by_method["clip-kmeans"]]
    every = sorted(written[0] + written[1])
    assert len(set(every)) == 12
    store = RunStore()
    assert sorted(store.runs()["id"]) == every
    assert sorted(entry.name for entry in (runs_dir / "records").iterdir()) == every
    assert store.rebuild_index() == 12
    for method, ids in zip(("cae", "clip-kmeans"), written):
        assert set(store.runs(method=method)["id"]) == set(ids)
        assert np.array_equal(store.get(ids[-1]).assignments, results[method].assignments)


def test_a_damaged_record_is_reported_and_skipped(made, runs_dir):
    bundle, results = made
    store = RunStore()
    ids = store.add_all({method: results[method] for method in ("cae", "clip-kmeans", "laic-notrain")}, bundle,
                        source="api")
    records = runs_dir / "records"
    (records / ids["cae"] / "manifest.json").write_text('{"id": "half a manif')
    (records / ids["laic-notrain"] / "images.parquet").write_bytes(b"not parquet")
    (runs_dir / "index.sqlite").write_bytes(b"not a database either" * 100)
    for path in runs_dir.glob("index.sqlite-*"):
        path.unlink()
    fresh = RunStore()
    listed = set(fresh.runs()["id"])
    assert listed == {ids["clip-kmeans"], ids["laic-notrain"]}  # the unreadable manifest is skipped
    assert any(ids["cae"] in problem and "manifest" in problem for problem in fresh.problems)
    assert any("index was unreadable" in problem for problem in fresh.problems)
    with pytest.raises(CaeError, match=f"run {ids['laic-notrain']} is damaged: images.parquet"):
        fresh.get(ids["laic-notrain"]).result(bundle)
    assert np.array_equal(fresh.get(ids["clip-kmeans"]).result(bundle).assignments,
                          results["clip-kmeans"].assignments)
    listing = cae("runs")
    assert ids["clip-kmeans"] in listing.stdout and f"warning: run {ids['cae']} is damaged" in listing.stderr


def test_runs_filter_sort_and_refuse_bad_requests(made, runs_dir):
    bundle, results = made
    store = RunStore()
    for epsilon, seed in ((0.05, 0), (0.1, 1)):
        result = run_method(bundle, "cae", 4, config=CaeConfig(epsilon=epsilon), seed=seed)
        store.add(result, bundle, source="api", bundle_name="planted160")
    store.add(results["clip-kmeans"], bundle, source="api", bundle_name="other")
    assert list(store.runs(settings={"epsilon": 0.1})["seed"]) == [1]
    assert list(store.runs(dataset="other")["method"]) == ["clip-kmeans"]
    assert list(store.runs(method=["cae"], sort="seed")["seed"]) == [0, 1]
    assert list(store.runs(method="cae", sort="epsilon", descending=True)["seed"]) == [1, 0]
    by_acc = store.runs(sort="acc")["acc"].tolist()
    assert by_acc == sorted(by_acc, reverse=True)
    assert store.values("dataset") == ["other", "planted160"]
    with pytest.raises(CaeError, match="cannot sort runs by 'bogus'"):
        store.runs(sort="bogus")
    with pytest.raises(CaeError, match="no run 'nothing'"):
        store.get("nothing")
    assert cae("runs", "show", "nothing", check=False).returncode == 2


def test_runs_commands_show_compare_rerun_export_and_delete(made, bundle_file, runs_dir, tmp_path):
    bundle, _ = made
    completed = cae("compare", "--features", str(bundle_file), "--clusters", "4", "--out", str(tmp_path / "cmp"),
                    "--quiet")
    ids = recorded_ids(completed.stderr)
    assert len(ids) == len(available_methods(bundle))  # every method the bundle allows
    listed = cae("runs", "--method", "cae", "--method", "clip-kmeans", "--sort", "acc").stdout
    assert ids["cae"] in listed and ids["clip-kmeans"] in listed and ids["cae-softmax"] not in listed
    shown = cae("runs", "show", ids["cae"][:-2]).stdout  # a unique start of the id is enough
    assert "cae on planted160 (160 images), K = 4" in shown and '"epsilon": 0.05' in shown

    compared = cae("runs", "compare", ids["cae"], ids["cae-no-nouns"]).stdout
    store = RunStore()
    a, b = store.get(ids["cae"]), store.get(ids["cae-no-nouns"])
    found = compare_runs(a, b)
    assert f"ARI between their labelings: {found.ari:.4f}" in compared
    assert int(found.contingency.to_numpy().sum()) == 160
    assert found.contingency.index[0].startswith("0 · ") and "noun" in found.contingency.index[0]
    difference = found.metrics.set_index("metric").loc["acc"]
    assert difference["b - a"] == pytest.approx(b.manifest["metrics"]["acc"] - a.manifest["metrics"]["acc"])

    assert "identical labels" in cae("runs", "rerun", ids["cae"]).stdout

    out = tmp_path / "cae.parquet"
    cae("runs", "export", ids["cae"], "--format", "parquet", "--out", str(out))
    table = pq.read_table(out)
    expected = {"index", "image_id", "path", "cluster", "cluster_name", "label", "weight_image", "weight_noun",
                "weight_caption", "top_nouns", "top_noun_mass", "top_noun", "top_captions", "top_caption_mass",
                "top_caption"}
    assert expected <= set(table.column_names)
    rows = table.to_pylist()
    assert [row["cluster"] for row in rows] == a.assignments.tolist()
    assert rows[0]["path"] == str(bundle_file.parent / "pictures" / str(bundle.image_ids[0]))
    assert rows[0]["label"] == bundle.label_name(int(bundle.labels[0]))
    assert len(rows[0]["top_nouns"]) == 5 and rows[0]["top_noun"] == rows[0]["top_nouns"][0]
    assert rows[0]["top_noun_mass"] == sorted(rows[0]["top_noun_mass"], reverse=True)

    cae("runs", "delete", ids["cae-softmax"], ids["cae-concat"])
    assert len(RunStore().runs()) == len(ids) - 2
    assert cae("runs", "show", ids["cae-softmax"], check=False).returncode == 2


def test_the_export_with_a_map_opens_in_pyarrow_and_embedding_atlas(made, bundle_file, runs_dir, tmp_path):
    bundle, results = made
    store = RunStore()
    run_id = store.add(results["cae"], bundle, source="api", bundle_path=bundle_file)
    run = store.get(run_id)
    assert add_umap(store, run, "fused", bundle, max_points=120) == "umap_fused"
    table = export_table(store.get(run_id), bundle)
    x, y = table.column("umap_fused_x").to_numpy(), table.column("umap_fused_y").to_numpy()
    assert np.isfinite(x).sum() == 120 and np.isfinite(y).sum() == 120  # the fitted sample; NaN elsewhere
    out = tmp_path / "atlas.parquet"
    cae("runs", "export", run_id, "--out", str(out))
    assert {"umap_fused_x", "umap_fused_y"} <= set(pq.read_table(out).column_names)

    atlas = pytest.importorskip("embedding_atlas.cli", reason="embedding-atlas is not installed (see README)")
    frame = atlas.load_datasets([str(out)])
    assert len(frame) == 160 and frame["cluster_name"].iloc[0] == table.column("cluster_name")[0].as_py()
    assert frame["top_nouns"].iloc[0].tolist() == table.column("top_nouns")[0].as_py()


def test_a_sweep_records_every_point_and_seed(bundle_file, runs_dir, tmp_path):
    completed = cae("sweep", "--features", str(bundle_file), "--clusters", "4", "--out", str(tmp_path / "sweep"),
                    "--methods", "clip-kmeans,cae-no-captions", "--seeds", "0,1", "--epsilon", "0.05,0.1", "--quiet")
    assert completed.stderr.count("recorded run") == 8
    store = RunStore()
    listed = store.runs(source="sweep")
    assert len(listed) == 8 and listed["batch"].nunique() == 4  # one batch per point and seed
    chosen = store.runs(method="cae-no-captions", settings={"epsilon": 0.1}, sort="seed")
    assert list(chosen["seed"]) == [0, 1]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    row = table[(table["method"] == "cae-no-captions") & (table["epsilon"] == 0.1) & (table["seed"] == 1)]
    assert store.get(chosen["id"][1]).manifest["metrics"]["acc"] == pytest.approx(row["acc"].item())
