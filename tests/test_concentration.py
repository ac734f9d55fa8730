"""How concentrated the correspondences are (cae_core/analysis/concentration.py): hand-made rows with known
entropy, OT rows from the column potentials against the engine's plan, the WordNet lineage rule on
hand-picked synsets, off-lineage mass on a hand-made plan, the ``theorem1`` command and the
Correspondences page on the real stl10 demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cae_core import CaeError, FeaturesBundle, load_bundle, run_methods, save_bundle
from cae_core.analysis.concentration import ClassLineage, class_lineage, class_senses, concentration, in_lineage, \
    measure_rows, off_lineage_mass, plan_rows, row_concentration
from cae_core.cli import main
from cae_core.config import data_dir
from cae_core.method.alignment import ot_alignment, transport_plan
from explorer.state import WORKSPACE_KEY, Workspace

REPO = Path(__file__).resolve().parents[1]


def blocks_of(rows) -> list:
    return [(slice(0, len(rows)), torch.tensor(rows, dtype=torch.float32))]


def test_concentration_of_hand_made_rows():
    rows = [[1, 0, 0, 0],  # one-hot: entropy 0
            [0.25, 0.25, 0.25, 0.25],  # uniform: entropy log 4
            [0.5, 0.25, 0.25, 0]]  # entropy 0.5 log 2 + 2 * 0.25 log 4 = 1.5 log 2
    measured = concentration(blocks_of(rows), top=2)
    np.testing.assert_allclose(measured.effective, [1, 4, 2 ** 1.5], rtol=1e-6)
    np.testing.assert_allclose(measured.top1, [1, 0.25, 0.5])
    np.testing.assert_allclose(measured.top, [1, 0.5, 0.75])
    assert measured.n_texts == 4 and measured.median()["effective_texts"] == pytest.approx(2 ** 1.5, rel=1e-6)
    assert measured.summary()["top1_share_mean"] == pytest.approx(1.75 / 3)
    # a plan's rows are rescaled to one first: the same rows at another scale and in two blocks
    plan = np.array(rows) / 7
    again = concentration(plan_rows(plan, block_rows=2), top=2)
    np.testing.assert_allclose(again.effective, measured.effective, rtol=1e-6)


def test_softmax_rows_match_an_independent_computation():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(30, 8)), rng.normal(size=(12, 8))
    cosine = (images / np.linalg.norm(images, axis=1, keepdims=True)) @ \
        (texts / np.linalg.norm(texts, axis=1, keepdims=True)).T
    logits = cosine / 0.1
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    measured = row_concentration(images, texts, 0.1, top=3, device="cpu", block_rows=7)
    np.testing.assert_allclose(measured.effective, np.exp(-(p * np.log(p)).sum(axis=1)), rtol=1e-5)
    np.testing.assert_allclose(measured.top, np.sort(p, axis=1)[:, -3:].sum(axis=1), rtol=1e-5)


def test_ot_rows_from_the_column_potentials_equal_the_engines_plan():
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(40, 8)), rng.normal(size=(15, 8))
    eps = 0.1
    plan = transport_plan(images, texts, epsilon=eps, device="cpu").astype(np.float64)
    cosine = (images / np.linalg.norm(images, axis=1, keepdims=True)) @ \
        (texts / np.linalg.norm(texts, axis=1, keepdims=True)).T
    # plan_ij = exp(s_ij / eps + f_i + g_j): any one row gives g up to a constant, which a softmax ignores
    g = np.log(plan[0]) - cosine[0] / eps
    from_g = row_concentration(images, texts, eps, column_offsets=g, device="cpu")
    from_plan = concentration(plan_rows(plan))
    for name in ("top1", "top", "effective"):
        np.testing.assert_allclose(getattr(from_g, name), getattr(from_plan, name), rtol=1e-5, atol=1e-5)
    engine = ot_alignment(images, texts, epsilon=eps, device="cpu")
    np.testing.assert_allclose(from_g.top1, engine.top_weight[:, 0], atol=1e-5)
    np.testing.assert_allclose(from_g.top, engine.top_weight.sum(axis=1), atol=1e-5)
    # without the offsets it is softmax retrieval, which is not the plan
    assert np.abs(row_concentration(images, texts, eps, device="cpu").effective - from_plan.effective).max() > 0.1


def test_bad_requests_are_named():
    images, texts = np.eye(3), np.eye(3)
    with pytest.raises(CaeError, match="temperature"):
        row_concentration(images, texts, 0.0)
    with pytest.raises(CaeError, match="column_offsets must be 3"):
        row_concentration(images, texts, 0.1, column_offsets=np.zeros(2))
    with pytest.raises(CaeError, match="top must be"):
        concentration(blocks_of(np.eye(3)), top=0)
    lineage = ClassLineage([("dog.n.01",)], np.ones((1, 2), dtype=bool))
    with pytest.raises(CaeError, match="label 1 has no class"):
        off_lineage_mass(blocks_of(np.eye(2)), np.array([0, 1]), lineage)
    with pytest.raises(CaeError, match="3 texts but the lineage 2"):
        off_lineage_mass(blocks_of(np.eye(3)), np.array([0, 0, 0]), lineage)


def test_the_lineage_rule_on_hand_picked_synsets():
    dog = class_senses("dog")
    assert "dog.n.01" in dog
    assert in_lineage("poodle.n.01", dog)  # a kind of dog
    assert in_lineage("dog.n.01", dog)  # the class itself
    assert in_lineage("canine.n.02", dog)  # the dog is a kind of canine, which is specific enough
    assert not in_lineage("truck.n.01", dog)
    assert not in_lineage("cat.n.01", dog)
    # the class is a kind of the noun only counts below MCA's too-general depth: "cat" is also slang for
    # a man (guy.n.01), and person.n.01, 3 steps below entity, is above it
    assert "guy.n.01" in class_senses("cat") and not in_lineage("person.n.01", class_senses("cat"))
    assert not in_lineage("stop_sign.n.01", class_senses("stop_sign"))  # not in WordNet 3.0: cannot be placed
    assert "taco.n.02" in class_senses("tacos")  # WordNet's own lookup finds the plural
    assert class_senses("Apply Eye Makeup") == () and class_senses("apple_pie") == ("apple_pie.n.01",)
    assert class_senses("Balance Beam") == ("balance_beam.n.01",)  # multiword names as one phrase


def test_poodle_images_sending_mass_to_dog_are_above_their_class():
    # the reverse direction of the rule: for a poodle, "dog" is a kind it belongs to, deep enough to count
    assert in_lineage("dog.n.01", ("poodle.n.01",))
    lineage = class_lineage(["poodle", "truck", "Apply Eye Makeup"], ["poodle.n.01", "dog.n.01", "truck.n.01"])
    np.testing.assert_array_equal(lineage.on, [[True, True, False], [False, False, True], [False, False, False]])
    np.testing.assert_array_equal(lineage.resolved, [True, True, False])


def test_off_lineage_mass_on_a_hand_made_plan():
    lineage = ClassLineage([("a",), ("b",), ()], np.array([[True, False, False],
                                                           [False, True, True],
                                                           [False, False, False]]))
    plan = np.array([[0.6, 0.3, 0.1],  # class 0: off = 0.3 + 0.1
                     [2.0, 1.0, 1.0],  # class 1, rescaled to one: off = 0.5
                     [0.2, 0.2, 0.6],  # unlabelled
                     [0.0, 0.0, 1.0]])  # class 2 did not resolve
    off = off_lineage_mass(plan_rows(plan, block_rows=3), np.array([0, 1, -1, 2]), lineage)
    np.testing.assert_allclose(off[:2], [0.4, 0.5], rtol=1e-6)
    assert np.isnan(off[2:]).all()
    figures = measure_rows(lambda: plan_rows(plan), np.array([0, 1, -1, 2]), lineage, top=1)
    assert figures["off_lineage_mass"] == pytest.approx(0.45)  # the counted images only
    assert figures["top1_share_mean"] == pytest.approx((0.6 + 0.5 + 0.6 + 1.0) / 4)


def real_bundle_path(name: str) -> Path:
    path = data_dir() / "embeddings" / name / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"real CLIP features not found at {path} (set CAE_DATA_DIR to the shared data folder)")
    return path


def test_theorem1_command_on_the_real_stl10_features(tmp_path, capsys):
    path = real_bundle_path("stl10-vitb16")
    assert main(["theorem1", "--features", str(path), "--out", str(tmp_path), "--epsilon", "0.05", "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "theorem1.csv")
    assert list(table["alignment"]) == ["ot", "softmax"] and (table["epsilon"] == 0.05).all()
    assert (table["resolved_class_share"] == 1).all()  # all ten STL names are WordNet nouns
    assert table["converged"].all() and table["off_lineage_mass"].between(0, 1).all()
    ot, softmax = table.iloc[0], table.iloc[1]
    printed = capsys.readouterr().out
    assert f"| stl10-vitb16: S = {ot['n_texts']}, 100% of classes resolved" in printed
    assert f"| 0.05 | {ot['off_lineage_mass']:.3f} / {softmax['off_lineage_mass']:.3f} |" in printed
    assert (tmp_path / "theorem1.md").read_text() == printed.split("theorem1.md\n", 1)[1]
    # the OT row is the engine's: the same semantic space and alignment as a run with K = 10, seed 0
    run = run_methods(load_bundle(path), ["cae"], 10, seed=0)["cae"]
    ot = table.set_index("alignment").loc["ot"]
    assert ot["n_texts"] == len(run.aligned["nouns"].selection)
    assert ot["top1_share_mean"] == pytest.approx(run.noun_alignment.top_weight[:, 0].mean(), abs=1e-5)
    assert ot["top10_share_mean"] == pytest.approx(run.noun_alignment.top_weight.sum(axis=1).mean(), abs=1e-5)


def test_correspondences_page_shows_the_concentration_of_the_real_demo(tmp_path_factory, monkeypatch):
    path = real_bundle_path("stl10-vitb16")
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    bundle = load_bundle(path)
    ws = Workspace()
    ws.load(bundle, "stl10-vitb16", path.parent / "images", random_weights=False)
    ws.set_results(run_methods(bundle, ["cae"], 10, seed=0))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state[WORKSPACE_KEY] = ws
    at.switch_page("pages/3_Correspondences.py")
    at.run()
    assert not at.exception and not at.error
    table, = [frame.value for frame in at.dataframe if "effective texts" in frame.value.columns]
    assert len(table) == 8  # nouns and captions x OT and softmax x this image and the median
    run = ws.results["cae"]
    image = 0  # the page opens on the first image
    for bank, alignment in (("nouns", run.noun_alignment), ("captions", run.caption_alignment)):
        rows = table[table["texts"].str.startswith(bank)].set_index(["alignment", "of"])
        own = rows.loc[("OT", "this image")]
        # the engine's own top matches give the same shares
        assert own["top-1 share"] == pytest.approx(alignment.top_weight[image, 0], abs=1e-5)
        assert own["top-10 share"] == pytest.approx(alignment.top_weight[image].sum(), abs=1e-5)
        assert rows.loc[("OT", "median over images"), "top-1 share"] == \
            pytest.approx(np.median(alignment.top_weight[:, 0]), abs=1e-5)
        # the effective number from the engine's plan, computed here with numpy
        plan = transport_plan(bundle.image_embeddings, run.aligned[bank].selection.embeddings,
                              epsilon=run.config.epsilon).astype(np.float64)
        row = plan[image] / plan[image].sum()
        row = row[row > 0]
        assert own["effective texts"] == pytest.approx(np.exp(-(row * np.log(row)).sum()), rel=1e-4)
        assert 1 <= rows.loc[("softmax", "this image"), "effective texts"] <= len(plan[image])
    assert any("Effective texts = exp(entropy" in caption.value for caption in at.caption)


def test_theorem1_refuses_a_bundle_without_labels_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    bundle = FeaturesBundle(rng.normal(size=(20, 4)), rng.normal(size=(6, 4)), np.array([f"n{i}" for i in range(6)]),
                            rng.normal(size=(3, 4)), np.array(["c0", "c1", "c2"]))
    path = save_bundle(bundle, tmp_path / "unlabelled.npz")
    # named second: refused before the first bundle's work starts
    assert main(["theorem1", "--features", str(real_bundle_path("stl10-vitb16")), str(path),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error == "error: unlabelled: Theorem 1's check needs labels and class names; this bundle lacks them\n"
    assert not (tmp_path / "out").exists()


def test_sweep_records_each_banks_concentration_from_the_runs_own_rows():
    from cae_core.analysis.sweep import correspondence_record

    bundle = load_bundle(real_bundle_path("stl10-vitb16"))
    results = run_methods(bundle, ["cae", "cae-softmax"], 10, seed=0)
    for method, result in results.items():
        record = correspondence_record(result, bundle)
        for bank, alignment in (("noun", result.noun_alignment), ("caption", result.caption_alignment)):
            # the rows rebuilt from the alignment's temperature and potential are the ones the run used
            assert record[f"{bank}_top1_share_mean"] == pytest.approx(alignment.top_weight[:, 0].mean(), abs=1e-5)
            assert record[f"{bank}_top10_share_mean"] == pytest.approx(alignment.top_weight.sum(axis=1).mean(),
                                                                       abs=1e-5)
        assert 0 < record["noun_off_lineage_mass"] < 1 and "caption_off_lineage_mass" not in record
