"""Image sources: symlinks, archives (zip slip, size caps, atomic extraction) and allowed roots."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cae_core import config
from cae_core.errors import CaeError
from cae_core.inputs import allowed_roots, open_image_source, resolve_allowed_path, safe_extract_zip


def png_bytes(colour=(0, 128, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, "PNG")
    return buffer.getvalue()


def write_zip(path: Path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def tree(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


# --------------------------------------------------------------------------- symlinks


def test_symlinks_leading_out_of_the_folder_are_skipped(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes())
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "real.png").write_bytes(png_bytes())
    (folder / "escape.png").symlink_to(outside / "secret.png")
    (folder / "escape_dir").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    (folder / "inside.png").symlink_to(folder / "real.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    source = open_image_source(str(folder))
    assert [record.image_id for record in source.records] == ["inside.png", "real.png"]
    assert sorted((skipped.image_id, skipped.reason) for skipped in source.skipped) == [
        ("dangling.png", "symlink outside source"), ("escape.png", "symlink outside source"),
        ("escape_dir", "symlink outside source")]


def test_symlinked_class_folder_inside_the_source_is_followed(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "1.png").write_bytes(png_bytes())
    (tmp_path / "cats").symlink_to(tmp_path / "store", target_is_directory=True)
    source = open_image_source(str(tmp_path))
    assert source.class_names == ["cats"]  # store was reached through the link first
    assert [record.image_id for record in source.records] == ["cats/1.png"]


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize("evil", ["../evil.png", "/abs/evil.png", "ok/../../evil.png", "ok\\..\\..\\evil.png",
                                  "C:/evil.png"])
def test_zip_slip_is_refused_before_anything_is_written(tmp_path, evil):
    # The safe entry comes first: nothing may be extracted before the whole archive was checked.
    archive = write_zip(tmp_path / "upload.zip", {"a/good.png": png_bytes(), evil: png_bytes()})
    dest = tmp_path / "work" / "out"
    with pytest.raises(CaeError, match="outside the extraction folder"):
        safe_extract_zip(archive, dest)
    assert tree(tmp_path) == ["upload.zip"]


def test_oversized_archive_is_refused_with_the_limit_named(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "big.zip", {f"{index}.png": b"\0" * 10_000 for index in range(3)})
    with pytest.raises(CaeError, match="more than the limit .*CAE_MAX_ARCHIVE_BYTES"):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=20_000)
    with pytest.raises(CaeError, match="3 files, more than the limit of 2"):
        safe_extract_zip(archive, tmp_path / "out", max_files=2)
    monkeypatch.setenv("CAE_MAX_ARCHIVE_BYTES", "1000")
    with pytest.raises(CaeError, match="CAE_MAX_ARCHIVE_BYTES"):
        open_image_source(str(archive), work_dir=tmp_path / "work")
    assert not (tmp_path / "out").exists()
    assert not any((tmp_path / "work").rglob("*.png"))


def test_failed_extraction_leaves_nothing_half_written(tmp_path):
    archive = write_zip(tmp_path / "damaged.zip", {"a.png": png_bytes(), "b.png": png_bytes((1, 2, 3))},
                        compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    data[data.rindex(b"IEND") - 20] ^= 0xFF  # damage b.png's bytes: its CRC check fails while extracting
    archive.write_bytes(bytes(data))
    with pytest.raises(CaeError, match="damaged.zip"):
        safe_extract_zip(archive, tmp_path / "work" / "out")
    assert tree(tmp_path / "work") == []


def test_not_a_zip_is_a_clear_error(tmp_path):
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(CaeError, match="damaged or not a zip archive"):
        open_image_source(str(tmp_path / "fake.zip"), work_dir=tmp_path / "work")


def test_zip_of_an_image_folder_is_extracted_once_per_content(tmp_path):
    entries = {"photos/": b"", "photos/cat/1.png": png_bytes(), "photos/dog/1.png": png_bytes(),
               "__MACOSX/photos/._1.png": b"\0"}
    archive = write_zip(tmp_path / "photos.zip", entries)
    work = tmp_path / "work"
    source = open_image_source(str(archive), work_dir=work)
    assert source.name == "photos" and source.class_names == ["cat", "dog"]
    assert [record.image_id for record in source.records] == ["cat/1.png", "dog/1.png"]
    assert source.root.is_relative_to(work.resolve())
    assert open_image_source(str(archive), work_dir=work).root == source.root
    write_zip(archive, {**entries, "photos/dog/2.png": png_bytes()})
    changed = open_image_source(str(archive), work_dir=work)
    assert changed.root != source.root and len(changed.records) == 3
    assert not [path for path in (work / "archives").iterdir() if path.name.endswith(".partial")]


# --------------------------------------------------------------------------- allowed roots


@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "set" / "cat").mkdir(parents=True)
    (allowed / "set" / "cat" / "1.png").write_bytes(png_bytes())
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "1.png").write_bytes(png_bytes())
    (allowed / "link").symlink_to(secret, target_is_directory=True)
    return allowed, secret


def test_paths_inside_allowed_roots_resolve(roots):
    allowed, _ = roots
    assert resolve_allowed_path(allowed / "set", [allowed]) == (allowed / "set").resolve()
    assert resolve_allowed_path("set/cat", [allowed]) == (allowed / "set" / "cat").resolve()
    assert resolve_allowed_path(str(allowed / "set" / ".." / "set"), [allowed]) == (allowed / "set").resolve()
    source = open_image_source(str(allowed / "set"), allowed_roots=[allowed])
    assert [record.image_id for record in source.records] == ["cat/1.png"]


@pytest.mark.parametrize("request_", ["{secret}", "{allowed}/../secret", "../secret", "link", "{allowed}/link/1.png",
                                      "/etc/passwd"])
def test_paths_outside_allowed_roots_are_refused(roots, request_):
    allowed, secret = roots
    path = request_.format(allowed=allowed, secret=secret)
    with pytest.raises(CaeError, match="refused to read"):
        resolve_allowed_path(path, [allowed])
    with pytest.raises(CaeError, match="refused to read"):
        open_image_source(path, allowed_roots=[allowed])


def test_missing_path_inside_a_root_is_reported_as_missing(roots):
    allowed, _ = roots
    with pytest.raises(CaeError, match="no such file or folder"):
        resolve_allowed_path("nothing-here", [allowed])


def test_allowed_roots_come_from_the_data_dir_and_the_operator(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAE_ALLOWED_ROOTS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert allowed_roots() == [(tmp_path / name).resolve() for name in ("data", "a", "b")]
    monkeypatch.delenv("CAE_ALLOWED_ROOTS")
    assert allowed_roots() == [(tmp_path / "data").resolve()]
    assert config.data_dir() == tmp_path / "data"
