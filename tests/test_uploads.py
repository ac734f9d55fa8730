"""Bad uploads on the Dataset page, through AppTest's file uploader: a damaged or hostile zip, a file that is not
a bundle or a broken one, a binary file given as a noun list. Each gets a one-line message that names the
problem, nothing is raised, and what was loaded before stays loaded."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import planted_bundle, save_bundle
from cifar_data import CIFAR
from explorer.state import WORKSPACE_KEY

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "1_Dataset.py")
PNG = (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde\0\0\0\x0cIDATx\x9cc\xf8\x0f\0"
       b"\x01\x01\x01\0\x18\xdd\x8d\xb4\0\0\0\0IEND\xaeB`\x82")  # a 1 x 1 PNG


@pytest.fixture(autouse=True)
def private_cache(fresh_cache):
    """Uploads are written under the cache: a folder of this test's own."""


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def errors(at: AppTest) -> list[str]:
    assert not at.exception, [element.message for element in at.exception]
    # error boxes escape markdown (a message may carry a linked value): read them unescaped
    return [element.value.replace("\\", "") for element in at.error]


@pytest.mark.parametrize("name, data, message", [
    ("photos.zip", b"this is not a zip", "damaged or not a zip archive"),
    ("slip.zip", zip_bytes({"a/good.png": PNG, "../../evil.png": PNG}), "outside the extraction folder"),
    ("empty.zip", zip_bytes({"notes/readme.txt": b"no pictures here"}), "no images found"),
])
def test_a_bad_zip_upload_is_a_one_line_message(name, data, message):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="source-kind").set_value("zip upload").run()
    at.file_uploader(key="zip-upload").set_value((name, data, "application/zip")).run()
    shown = errors(at)
    assert len(shown) == 1 and message in shown[0] and "\n" not in shown[0], shown
    assert not any("images** in" in markdown.value for markdown in at.markdown)  # no listing of a bad source


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_bad_bundle_uploads_are_refused_and_the_loaded_bundle_is_kept(tmp_path):
    good = planted_bundle(n_images=40, n_classes=4, dim=16, n_nouns=12, n_captions=12)
    good_bytes = save_bundle(good, tmp_path / "good.npz").read_bytes()
    arrays = dict(np.load(tmp_path / "good.npz"))
    nan = dict(arrays, image_embeddings=np.where(np.arange(40)[:, None] == 7, np.nan, arrays["image_embeddings"]))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="bundle-how").set_value("upload a file").run()
    at.file_uploader(key="bundle-upload").set_value(("good.npz", good_bytes, "application/octet-stream")).run()
    at.button(key="load-bundle").click().run()
    assert not errors(at) and at.session_state[WORKSPACE_KEY].bundle.n_images == 40
    for name, data, message in [
        ("text.npz", b"just some text", "is not a readable .npz features bundle"),
        ("lacking.npz", npz_bytes(image_embeddings=np.ones((3, 4))), "lacks the key(s) noun_embeddings"),
        ("nan.npz", npz_bytes(**nan), "image_embeddings contains NaN or infinite values (1 row(s); the first is row 7)"),
        ("pickled.npz", npz_bytes(**dict(arrays, nouns=np.array(list(arrays["nouns"]), dtype=object))),
         "nouns is an object array"),
    ]:
        at.file_uploader(key="bundle-upload").set_value((name, data, "application/octet-stream")).run()
        at.button(key="load-bundle").click().run()
        shown = errors(at)
        assert len(shown) == 1 and message in shown[0], (name, shown)
        ws = at.session_state[WORKSPACE_KEY]
        assert ws.bundle.n_images == 40 and ws.dataset_name == str(good.metadata.get("image_source") or "good.npz")


def test_a_binary_noun_list_is_refused_before_any_encoding():
    if not CIFAR.is_dir():
        pytest.skip(f"the shared CIFAR-10 images are not at {CIFAR}")
    at = AppTest.from_file(PAGE, default_timeout=300).run()
    at.selectbox(key="shared-set").set_value("cifar10-test").run()
    at.number_input(key="limit").set_value(12).run()
    at.radio(key="weights").set_value("random weights").run()
    at.radio(key="nouns-bank").set_value("upload a file").run()
    at.file_uploader(key="nouns-upload").set_value(("nouns.txt", PNG, "text/plain")).run()
    at.radio(key="captions-bank").set_value("upload a file").run()
    at.file_uploader(key="captions-upload").set_value(("captions.txt", b"a dog\na cat\n", "text/plain")).run()
    at.button(key="encode").click().run()
    shown = errors(at)
    assert len(shown) == 1 and "is not a text file (it holds NUL bytes)" in shown[0], shown
    assert at.session_state[WORKSPACE_KEY].bundle is None
