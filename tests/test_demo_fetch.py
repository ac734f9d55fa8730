"""Demos fetched from their public sources, against a local HTTP server on 127.0.0.1 standing in for GitHub.

The server serves files in the sources' own formats (fp16 torch tensors, .npy, LVIS's category JSON,
Detic's Objects365 CSV), made from the shared DTD bundle, under a manifest injected in place of the real
one: the real conversion builds the demo from them, a corrupted file is refused, an interrupted
transfer is resumed (or restarted where the server ignores ranges), and no network gives one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cae_core import CaeError, cli, data_dir, load_bundle
from cae_core.files import partial_path
from cae_core.inputs import demo_sources, fetchable_demos, find_demos, load_demo
from cae_core.inputs.demo_sources import DemoSource, SourceFile, fetch_demo, fetched_path

NAME = "dtd-vitb32"
SHARED = data_dir() / "embeddings" / NAME / f"{NAME}.npz"
FP16_ATOL = 1e-3  # the sources store fp16 (11-bit mantissa: relative error <= 2^-11 per element)
REPO = Path(__file__).resolve().parents[1]


class Upstream:
    """What the stand-in server serves and how: files by path, cuts, whether ranges are honoured."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.cut = {}  # path -> bytes sent before closing, for the next request of that path only
        self.ranges = True
        self.requests = []  # (path, Range header or None)


def _handler(upstream: Upstream):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            wanted = self.headers.get("Range")
            upstream.requests.append((path, wanted))
            if path not in upstream.files:
                self.send_error(404)
                return
            body, start = upstream.files[path], 0
            if wanted and upstream.ranges:
                start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = upstream.cut.pop(path, None)
            self.wfile.write(body[start:cut])
            if cut is not None:  # the connection drops mid-body
                self.close_connection = True

    return Handler


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    """The DTD demo's source files, in their formats, made from the shared bundle (IMAS: test and val splits
    as fp16 tensors; Detic: the banks as fp16 .npy, LVIS's categories, the Objects365 names)."""
    shared = load_bundle(SHARED)
    folder = tmp_path_factory.mktemp("upstream")
    files = {}

    def tensor(key: str, array: np.ndarray) -> None:
        torch.save(torch.from_numpy(array), folder / key)
        files[key] = (folder / key).read_bytes()

    for split in ("test", "val"):
        rows = np.char.startswith(shared.image_ids.astype(str), split)
        tensor(f"{split}_features", shared.image_embeddings[rows].astype(np.float16))
        tensor(f"{split}_labels", shared.labels[rows])
    for key, array in (("nouns", shared.noun_embeddings), ("captions", shared.caption_embeddings)):
        np.save(folder / f"{key}.npy", array.astype(np.float16))
        files[key] = (folder / f"{key}.npy").read_bytes()
    categories = [{"id": row + 1, "name": str(noun).replace(" ", "_"), "synset": str(synset), "def": str(gloss)}
                  for row, (noun, synset, gloss) in enumerate(zip(shared.nouns, shared.noun_synsets,
                                                                   shared.noun_glosses))]
    files["noun_names"] = json.dumps(categories[::-1]).encode()  # in LVIS's files the order is not the ids'
    # id, the name as published (here garbled), the fixed name: the one Detic embedded
    files["caption_names"] = "".join(f"{row + 1},{str(caption)[2:].upper()}x,{str(caption)[2:]}\n"
                                     for row, caption in enumerate(shared.captions)).encode()
    return files


@pytest.fixture
def upstream(sources):
    state = Upstream(sources)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def manifest(upstream, sources, monkeypatch, tmp_path):
    """The real DTD recipe, its files pointed at the local server with their checksums; no CAE_DATA_DIR demo."""
    files = {key: SourceFile(f"{upstream.url}/{key}", hashlib.sha256(body).hexdigest(), len(body))
             for key, body in sources.items()}
    source = dataclasses.replace(demo_sources.DEMO_SOURCES[NAME], files=files)
    monkeypatch.setattr(demo_sources, "DEMO_SOURCES", {NAME: source})
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "no-data"))
    return source


def assert_is_the_shared_demo(path: Path) -> None:
    built, shared = load_bundle(path), load_bundle(SHARED)
    for key in ("labels", "image_ids", "class_names", "nouns", "noun_synsets", "noun_glosses", "captions"):
        np.testing.assert_array_equal(getattr(built, key), getattr(shared, key), err_msg=key)
    for key in ("image_embeddings", "noun_embeddings", "caption_embeddings"):
        np.testing.assert_allclose(getattr(built, key), getattr(shared, key), atol=FP16_ATOL, err_msg=key)


def downloads(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "downloads" / "demo-sources"


def test_the_command_builds_the_demo_from_the_server_and_the_app_lists_it(manifest, upstream, capsys):
    assert [source.name for source in fetchable_demos(find_demos())] == [NAME]
    with pytest.raises(CaeError, match="can be fetched"):
        load_demo(NAME)

    assert cli.main(["demo", "--fetch", NAME, "--quiet"]) == 0
    path = Path(capsys.readouterr().out.splitlines()[0])
    assert path == fetched_path(NAME) and path.is_file()
    assert_is_the_shared_demo(path)
    assert {Path(p).name for p, _ in upstream.requests} == set(manifest.files)
    assert fetchable_demos(find_demos()) == []
    bundle, _, demo = load_demo(NAME)
    assert demo.path == path and bundle.n_images == 2820

    served = len(upstream.requests)
    assert cli.main(["demo", "--fetch", NAME, "--quiet"]) == 0  # built already: nothing downloaded again
    assert len(upstream.requests) == served


def test_progress_counts_the_bytes_of_every_file_then_the_build(manifest):
    seen = []
    fetch_demo(NAME, progress=lambda stage, fraction, message: seen.append((stage, fraction)))
    download = [fraction for stage, fraction in seen if stage == "download"]
    assert download == sorted(download) and download[-1] == 1.0 and len(download) > len(manifest.files)
    assert [stage for stage, _ in seen][-1] == "build" and seen[-1][1] == 1.0


def test_a_corrupted_file_is_refused_and_deleted(manifest, upstream, tmp_path):
    good = upstream.files["val_features"]
    upstream.files["val_features"] = good[:-1] + bytes([good[-1] ^ 0xFF])
    with pytest.raises(CaeError, match=r"refused dtd-vitb32's val_features .*SHA-256") as error:
        fetch_demo(NAME)
    assert "\n" not in str(error.value)
    assert not any("val_features" in path.name for path in downloads(tmp_path).iterdir())  # nor a partial
    assert not fetched_path(NAME).exists()

    upstream.files["val_features"] = good  # the source is right again: the next attempt builds it
    assert_is_the_shared_demo(fetch_demo(NAME))


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_an_interrupted_download_is_not_used_and_the_next_attempt_completes_it(manifest, upstream, tmp_path,
                                                                               ranges):
    upstream.ranges = ranges
    body = upstream.files["test_features"]
    upstream.cut["test_features"] = len(body) // 2
    with pytest.raises(CaeError, match=f"stopped after {len(body) // 2:,} of {len(body):,} bytes"):
        fetch_demo(NAME)
    file = manifest.files["test_features"]
    dest = downloads(tmp_path) / f"{file.sha256[:16]}-{file.name}"
    assert not dest.exists() and partial_path(dest).stat().st_size == len(body) // 2
    assert not fetched_path(NAME).exists()

    assert_is_the_shared_demo(fetch_demo(NAME))
    retry = [header for path, header in upstream.requests if path == "test_features"][-1]
    assert retry == f"bytes={len(body) // 2}-"  # asked for the rest; a server without ranges sent it all
    assert dest.read_bytes() == body and not partial_path(dest).exists()


def test_without_a_server_one_line_says_what_to_do(manifest, monkeypatch, capsys):
    closed = {key: dataclasses.replace(file, url=f"http://127.0.0.1:9/{key}") for key, file in manifest.files.items()}
    monkeypatch.setattr(demo_sources, "DEMO_SOURCES", {NAME: dataclasses.replace(manifest, files=closed)})
    assert cli.main(["demo", "--fetch", NAME, "--quiet"]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and message.startswith("error: cannot download")
    assert "CAE_DATA_DIR" in message and str(fetched_path(NAME)) in message


def test_a_demo_in_the_data_folder_is_read_from_there_not_fetched(manifest, upstream, monkeypatch, capsys):
    monkeypatch.setenv("CAE_DATA_DIR", str(SHARED.parents[2]))  # the folder holding embeddings/
    assert cli.main(["demo", "--fetch", NAME, "--quiet"]) == 0
    assert "already here" in capsys.readouterr().out and upstream.requests == []
    assert NAME not in {source.name for source in fetchable_demos(find_demos())}


def test_every_real_source_is_pinned_and_checksummed():
    for source in demo_sources.DEMO_SOURCES.values():
        for file in source.files.values():
            assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", file.url)
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256) and file.size > 0


def test_home_offers_fetch_and_then_opens_the_demo(manifest):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    at.button(key=f"fetch-{NAME}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert fetched_path(NAME).is_file()
    assert not [button for button in at.button if button.key == f"fetch-{NAME}"]
    assert at.button(key=f"demo-{NAME}").label == "Open"


def test_home_says_in_one_line_when_a_fetch_fails_and_stays_usable(manifest, monkeypatch):
    closed = {key: dataclasses.replace(file, url=f"http://127.0.0.1:9/{key}") for key, file in manifest.files.items()}
    monkeypatch.setattr(demo_sources, "DEMO_SOURCES", {NAME: dataclasses.replace(manifest, files=closed)})
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.button(key=f"fetch-{NAME}").click().run()
    assert not at.exception
    # error boxes escape markdown (a message may carry a linked value): read them unescaped
    shown = [error.value.replace("\\", "") for error in at.error]
    assert [message for message in shown if "cannot download" in message and "CAE_DATA_DIR" in message]
    assert at.button(key=f"fetch-{NAME}") and not fetched_path(NAME).exists()
