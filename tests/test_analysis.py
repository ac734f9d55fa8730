"""Engine tests of cae_core.analysis: polysemy, pair similarities, cluster names, run comparisons."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cae_core import analysis, inputs
from cae_core.method.alignment import Alignment
from cae_core.errors import CaeError
from cae_core.method.fusion import Fusion
from cae_core import AlignedBank, Bank, CaeConfig, ClusteringResult, run_method, run_methods
from cae_core.inputs.synthetic import planted_bundle
from polysemy_data import CLASSES, SYNSETS, crane_bundle


@pytest.fixture(scope="module")
def crane_runs():
    bundle = crane_bundle()
    return bundle, run_methods(bundle, ["cae", "cae-no-captions", "clip-kmeans"], n_clusters=4)


def _alignment(correspondence: np.ndarray) -> Alignment:
    n = len(correspondence)
    return Alignment("ot", correspondence, np.zeros((n, 1), dtype=np.int64), np.ones((n, 1)), np.ones((n, 1)),
                     np.ones(1))


def test_pair_similarities_by_hand():
    """Two images whose every representation is written out: the cosines are known exactly."""
    bundle = crane_bundle(per_class=1)
    image = bundle.image_embeddings
    noun = np.zeros_like(image)
    noun[:, 0] = 1  # both images get the same (ambiguous) noun: cosine 1
    caption = np.zeros_like(image)
    caption[0, 1], caption[1, 2] = 1, 1  # orthogonal captions: cosine 0
    fused = np.zeros((len(image), 2))
    fused[0], fused[1] = [3, 4], [4, 3]  # not unit: cosine 24/25
    aligned = {bank: AlignedBank(bank, None, _alignment(correspondence))
               for bank, correspondence in ((Bank.NOUNS, noun), (Bank.CAPTIONS, caption))}
    fusion = Fusion(("image",), np.ones((4, 1)), fused, np.ones((4, 1)), np.ones((4, 1)), np.ones(1), "equal", False)
    result = ClusteringResult("cae", 2, 0, CaeConfig(), np.zeros(len(image), dtype=np.int64), fused, None, {},
                              None, aligned, fusion, [])
    similarity = analysis.pair_similarities(result, bundle, 0, 1)
    assert similarity["image"] == pytest.approx(float(image[0] @ image[1]), abs=1e-6)
    assert similarity["noun"] == pytest.approx(1.0)
    assert similarity["caption"] == pytest.approx(0.0)
    assert similarity["fused"] == pytest.approx(24 / 25)


def test_pair_similarities_without_text():
    bundle = crane_bundle(per_class=5)
    result = run_method(bundle, "clip-kmeans", 4)
    assert analysis.pair_similarities(result, bundle, 0, 6) == {
        "image": pytest.approx(float(bundle.image_embeddings[0] @ bundle.image_embeddings[6]), abs=1e-6),
        "noun": None, "caption": None, "fused": None}


def test_crane_matches_machines_and_storks(crane_runs):
    """The noun-only pipeline sends "crane" to machine cranes and storks alike (the ambiguity),
    the captions tell them apart."""
    bundle, runs = crane_runs
    images = analysis.images_matching_noun(runs["cae-no-captions"], "crane")
    classes = {CLASSES[label] for label in bundle.labels[images]}
    assert classes == {"crane", "black stork"}
    assert set(analysis.matched_senses(runs["cae"], bundle, "crane", images)) <= set(SYNSETS.values())
    # captions pull machine cranes and storks further apart than their images or nouns do
    table = analysis.separation(runs["cae"], bundle, images, bundle.labels[images]).set_index("representation")
    assert table.loc["caption", "between"] < min(table.loc["image", "between"], table.loc["noun", "between"]) - 0.2
    assert set(table.index) == {"image", "noun", "caption", "fused"}
    # each class's heaviest caption speaks of its own sense
    groups = np.unique(bundle.labels[images], return_inverse=True)[1]
    named = analysis.group_texts(runs["cae"], images, groups)
    assert "construction" in named[0].captions[0] and "marsh" in named[1].captions[0]


def test_no_images_for_an_absent_word(crane_runs):
    _, runs = crane_runs
    assert len(analysis.images_matching_noun(runs["cae"], "tank")) == 0
    assert len(analysis.images_matching_noun(runs["clip-kmeans"], "crane")) == 0  # no nouns aligned


def test_captions_mentioning():
    captions = ["A crane lifts beams.", "Cranes in a marsh", "The cranesbill flower", "a water tank", "Crane_fly"]
    assert analysis.captions_mentioning(captions, "crane").tolist() == [0, 1]
    assert analysis.captions_mentioning(captions, "water_tank").tolist() == [3]
    assert analysis.captions_mentioning(captions, "  ").tolist() == []


def test_sense_caption_similarity_picks_the_closest_gloss():
    bundle = crane_bundle(per_class=2)
    mentions = analysis.captions_mentioning(bundle.captions, "crane")
    assert len(mentions) == 3  # construction site, building site, wetland
    machine, wetland = bundle.caption_embeddings[mentions[0]], bundle.caption_embeddings[mentions[2]]
    glosses = np.stack([wetland + 0.1 * machine, machine + 0.1 * wetland, -machine])  # hand-made, not unit
    names = [SYNSETS["bird"], SYNSETS["machine"], "crane.n.01"]
    table = analysis.sense_caption_similarity(glosses, bundle.caption_embeddings[mentions],
                                               bundle.captions[mentions], names)
    assert list(table.columns) == ["caption", *names, "closest"]
    assert table["caption"].tolist() == bundle.captions[mentions].tolist()
    assert table["closest"].tolist() == [SYNSETS["machine"], SYNSETS["machine"], SYNSETS["bird"]]
    unit = glosses / np.linalg.norm(glosses, axis=1, keepdims=True)
    np.testing.assert_allclose(table[names].to_numpy(), bundle.caption_embeddings[mentions] @ unit.T, atol=1e-6)
    # senses whose glosses embed alike: no caption names one
    tied = analysis.sense_caption_similarity(np.stack([machine, machine]), bundle.caption_embeddings[mentions],
                                              bundle.captions[mentions], names[:2])
    assert set(tied["closest"]) == {""}
    # one sense is always the closest; repeated names get a column each
    single = analysis.sense_caption_similarity(machine[None], bundle.caption_embeddings[mentions],
                                                bundle.captions[mentions], ["crane.n.04"])
    assert set(single["closest"]) == {"crane.n.04"}
    twice = analysis.sense_caption_similarity(glosses[:2], bundle.caption_embeddings[mentions],
                                               bundle.captions[mentions], ["x", "x"])
    assert list(twice.columns) == ["caption", "x (1)", "x (2)", "closest"]
    assert analysis.sense_caption_similarity(glosses, np.zeros((0, glosses.shape[1])), [], names).empty
    with pytest.raises(CaeError, match="different models"):
        analysis.sense_caption_similarity(glosses[:, :5], bundle.caption_embeddings[mentions],
                                           bundle.captions[mentions], names)
    with pytest.raises(CaeError, match="sense names"):
        analysis.sense_caption_similarity(glosses, bundle.caption_embeddings[mentions],
                                           bundle.captions[mentions], names[:2])


def test_the_bank_encodes_the_lemma_alone():
    """The noun bank gives every sense of a lemma one vector: the noun row OT picks names no sense."""
    bundle = crane_bundle(per_class=2)
    assert not analysis.senses_distinguishable(bundle, "crane")
    rows = analysis.noun_rows(bundle.nouns, "crane")
    bundle.noun_embeddings[rows[0]] = bundle.caption_embeddings[0]
    assert analysis.senses_distinguishable(bundle, "crane")
    assert not analysis.senses_distinguishable(bundle, "stork")  # one row


def test_gloss_prompts():
    assert analysis.gloss_prompts("water_tank", ["a tank  for\nwater"]) == ["water tank: a tank for water"]
    assert analysis.gloss_prompts(" crane ", ["bird", "machine"]) == ["crane: bird", "crane: machine"]


def test_text_model_of_the_metadata(tmp_path):
    with pytest.raises(CaeError, match="names no CLIP model"):
        inputs.text_model_of({"synthetic": "crane"})
    assert inputs.text_model_of({"model": "ViT-B-32", "pretrained": "openai"}) == ("ViT-B-32", "openai")
    for random in (None, "random"):
        assert inputs.text_model_of({"model": "ViT-S-32", "pretrained": random}) == ("ViT-S-32", None)
    # a relative checkpoint path typed elsewhere: the fingerprint's absolute path finds the file
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"x")
    metadata = {"model": "ViT-S-32", "pretrained": "weights.pt", "checkpoint": f"file:{checkpoint}:1:123"}
    assert inputs.text_model_of(metadata) == ("ViT-S-32", str(checkpoint))
    gone = {"model": "ViT-S-32", "pretrained": "/nowhere/weights.pt", "checkpoint": "file:/nowhere/weights.pt:1:2"}
    assert inputs.text_model_of(gone) == ("ViT-S-32", "/nowhere/weights.pt")  # load_clip says it is gone
    assert inputs.checkpoint_changed(metadata, f"file:{checkpoint}:1:456")
    assert not inputs.checkpoint_changed(metadata, metadata["checkpoint"])
    assert not inputs.checkpoint_changed({"checkpoint": "tag:openai"}, "tag:openai")
    assert not inputs.checkpoint_changed({"checkpoint": None}, None)


def test_encode_glosses_with_the_text_tower(clip_model):
    """Each sense's gloss gets its own unit vector; a gloss longer than CLIP's context is cut, not refused."""
    glosses = ["large long-necked wading bird of marshes and plains in many parts of the world",
               "lifts and moves heavy objects; lifting tackle is suspended from a pivoted boom",
               " ".join(["a very long gloss"] * 60)]
    embeddings = analysis.encode_glosses(clip_model, "crane", glosses)
    assert embeddings.shape == (3, clip_model.model.text_projection.shape[1]) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert np.max(np.abs(embeddings[0] - embeddings[1])) > 1e-3
    with pytest.raises(CaeError):
        analysis.encode_glosses(clip_model, "crane", [])


def test_cluster_names_come_from_the_majority_class():
    """Planted classes, texts named after their class: each cluster's top nouns and captions by
    transport mass belong to the class most of its images come from."""
    bundle = planted_bundle(n_images=500, n_classes=5, noise=0.4, seed=1)
    result = run_method(bundle, "cae", 5)
    summary = analysis.cluster_summary(result, bundle)
    assert len(summary) == 5 and summary["size"].sum() == 500
    for entry, majority in zip(result.cluster_texts, summary["majority class"]):
        wanted = majority.split()[-1]  # "class 3" -> "3"; texts are named "noun 3-17"
        assert entry.nouns and entry.captions
        for text in entry.nouns + entry.captions:
            assert re.fullmatch(rf"(noun|caption) {wanted}-\d+", text), (text, majority)
    confusion = analysis.confusion_table(result, bundle)
    assert confusion.shape == (5, 5) and confusion.to_numpy().sum() == 500
    # clusters are ordered by their matched class: the diagonal holds the matched images
    assert np.trace(confusion.to_numpy()) == pytest.approx(result.metrics["acc"] * 500)


def test_matching_and_changed_images():
    a = np.array([0, 0, 1, 1, 2, 2])
    b = np.array([5, 5, 3, 3, 3, 4])  # b's 5 is a's 0, 3 is 1, 4 is 2; image 4 moved
    assert analysis.match_clusters(a, b) == {5: 0, 3: 1, 4: 2}
    assert analysis.aligned_assignments(a, b).tolist() == [0, 0, 1, 1, 1, 2]
    runs = [ClusteringResult(name, 3, 0, CaeConfig(), assignments, np.zeros((6, 1)), None, {}, None, {}, None, [])
            for name, assignments in (("x", a), ("y", b))]
    assert analysis.changed_images(*runs).tolist() == [4]
    assert analysis.changed_images(runs[0], runs[0]).tolist() == []
    assert analysis.shared_cluster_rate(a, np.arange(4), np.array([0, 0, 1, 1])) == 0.0


def test_metrics_long(crane_runs):
    _, runs = crane_runs
    table = analysis.metrics_long(runs)
    assert len(table) == 3 * len(runs) and set(table["metric"]) == {"ACC", "NMI", "ARI"}
