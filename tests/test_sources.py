"""Image sources: folder layouts, decoding of odd and broken files, --limit, benchmarks, real data."""

from __future__ import annotations

import io
import os
import pickle
import struct
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cae_core import config
from cae_core.arrays import round_robin
from cae_core.inputs import sources, torchvision_sets
from cae_core.errors import CaeError
from cae_core.inputs import (Benchmark, ImageLoadError, ImageSource, dataset_choices, load_image, open_image_source,
                             validate_images)

DATA_DIR = config.data_dir()
needs_data = pytest.mark.skipif(not (DATA_DIR / "images").is_dir(), reason=f"no shared data at {DATA_DIR}")


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def rgb(size=(8, 8), colour=(200, 30, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:33] = ihdr + struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def ids(source: ImageSource) -> list[str]:
    return [record.image_id for record in source.records]


# --------------------------------------------------------------------------- layouts


def test_image_folder_layout_gives_sorted_classes_and_relative_ids(tmp_path):
    for name in ("b/2.png", "b/1.png", "a/x.jpg", "a/deep/y.png"):
        save(tmp_path / name, rgb())
    source = open_image_source(str(tmp_path))
    assert source.class_names == ["a", "b"]
    assert ids(source) == ["a/deep/y.png", "a/x.jpg", "b/1.png", "b/2.png"]
    assert source.labels.tolist() == [0, 0, 1, 1]
    assert source.root == tmp_path.resolve() and source.name == tmp_path.name


def test_classes_tsv_names_classes_and_empty_class_folders_are_dropped(tmp_path):
    save(tmp_path / "n03126707" / "1.png", rgb())
    save(tmp_path / "n01443537" / "1.png", rgb())
    (tmp_path / "n09999999").mkdir()
    (tmp_path / "classes.tsv").write_text("n03126707\tcrane\nn01443537\tgoldfish, Carassius auratus\n")
    source = open_image_source(str(tmp_path))
    assert source.class_names == ["goldfish", "crane"]


def test_flat_folder_walks_recursively_without_labels(tmp_path):
    save(tmp_path / "top.png", rgb())
    save(tmp_path / "a" / "b" / "c" / "d" / "e" / "f" / "deep.png", rgb())
    source = open_image_source(str(tmp_path))
    assert source.class_names is None and source.labels is None
    assert ids(source) == ["a/b/c/d/e/f/deep.png", "top.png"]
    assert all(record.label == -1 for record in source.records)


def test_hidden_and_non_image_files_are_ignored_silently(tmp_path):
    save(tmp_path / "good.png", rgb())
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    save(tmp_path / "._good.png", rgb())
    save(tmp_path / ".thumbnails" / "t.png", rgb())
    save(tmp_path / "__MACOSX" / "m.png", rgb())
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_image_source(str(tmp_path))
    assert ids(source) == ["good.png"] and source.skipped == []


def test_non_ascii_names(tmp_path):
    save(tmp_path / "café" / "naïve 图像.png", rgb())
    save(tmp_path / "Ünïcode" / "ß.jpg", rgb())
    source = validate_images(open_image_source(str(tmp_path)))
    assert ids(source) == ["café/naïve 图像.png", "Ünïcode/ß.jpg"]
    assert source.class_names == ["café", "Ünïcode"]


@pytest.mark.parametrize("make, expected", [
    (lambda folder: folder / "missing", "no such folder or archive: {folder}/missing; give a folder of images"),
    (lambda folder: folder, "no images found in {name}; expected image files"),  # empty
    (lambda folder: (folder / "readme.txt").write_text("no images") and folder, "no images found in {name}; "),
    (lambda folder: (folder / "list.csv").write_text("a,b") and folder / "list.csv",
     "{folder}/list.csv is neither a folder nor a .zip archive of images"),
    (lambda folder: "  ", "no image source given; name a folder of images"),
], ids=["missing", "empty", "no-images", "not-a-folder", "blank"])
def test_requests_that_cannot_be_met_are_one_line_errors_naming_the_source(tmp_path, make, expected):
    with pytest.raises(CaeError) as error:
        open_image_source(str(make(tmp_path)))
    message = str(error.value)
    assert "\n" not in message
    assert expected.format(folder=tmp_path, name=tmp_path.name) in message, message


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name,image,options", [
    ("grey.png", Image.new("L", (5, 4), 128), {}),
    ("cmyk.jpg", Image.new("CMYK", (5, 4), (0, 255, 255, 0)), {}),
    ("rgba.png", Image.new("RGBA", (5, 4), (255, 0, 0, 0)), {}),
    ("deep.png", Image.fromarray(np.full((4, 5), 65535, dtype=np.uint16)), {}),
    ("palette.gif", Image.new("P", (5, 4), 3), {"transparency": 3}),
    ("palette.png", rgb((5, 4)).convert("P"), {}),
    ("one.png", Image.new("RGB", (1, 1), (1, 2, 3)), {}),
    ("la.png", Image.new("LA", (5, 4), (10, 255)), {}),
    ("mono.bmp", Image.new("1", (5, 4), 1), {}),
], ids=lambda value: value if isinstance(value, str) else "")
def test_odd_but_valid_images_load_as_rgb(tmp_path, name, image, options):
    loaded = load_image(save(tmp_path / name, image, **options))
    assert loaded.mode == "RGB" and loaded.size == image.size


def test_sixteen_bit_and_transparent_images_are_rescaled_not_clipped(tmp_path):
    deep = load_image(save(tmp_path / "deep.png", Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))))
    assert np.asarray(deep)[0, 0].tolist() == [127, 127, 127]
    clear = load_image(save(tmp_path / "clear.png", Image.new("RGBA", (2, 2), (0, 0, 0, 0))))
    assert np.asarray(clear)[0, 0].tolist() == [255, 255, 255]  # transparency shown on white


def broken_files(folder: Path) -> dict[str, str]:
    """Bad files written into ``folder``, by image id, with the start of the expected reason."""
    jpeg = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file, not a JPEG")
    png_claiming(folder / "bomb.png", 40_000, 40_000)  # over twice the limit: Pillow raises
    png_claiming(folder / "bomb_warning.png", 10_000, 10_000)  # over the limit: Pillow only warns
    return {"truncated.jpg": "truncated or corrupt", "empty.png": "empty file",
            "text.jpg": "not an image", "bomb.png": "decompression bomb", "bomb_warning.png": "decompression bomb"}


def test_broken_files_raise_image_load_error_with_a_short_reason(tmp_path):
    expected = broken_files(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(ImageLoadError) as error:
            load_image(tmp_path / name)
        assert error.value.reason.startswith(reason), name
        assert isinstance(error.value, CaeError)
    assert Image.MAX_IMAGE_PIXELS is not None  # the limit stays on


def test_validate_images_moves_bad_files_to_skipped(tmp_path):
    expected = broken_files(tmp_path)
    save(tmp_path / "good.png", rgb())
    save(tmp_path / "sub" / "good.jpg", rgb())
    calls = []
    source = validate_images(open_image_source(str(tmp_path)), progress=lambda *args: calls.append(args))
    assert ids(source) == ["good.png", "sub/good.jpg"]
    reasons = {skipped.image_id: skipped.reason for skipped in source.skipped}
    assert reasons.keys() == expected.keys()
    assert all(reasons[name].startswith(reason) for name, reason in expected.items())
    assert calls[0][1] == 0.0 and calls[-1][1] == 1.0


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(tmp_path):
    save(tmp_path / "good.png", rgb())
    locked = save(tmp_path / "locked.png", rgb())
    locked.chmod(0)
    source = validate_images(open_image_source(str(tmp_path)))
    assert [(skipped.image_id, skipped.reason) for skipped in source.skipped] == [("locked.png", "permission denied")]


def test_unreadable_file_is_skipped_simulated(tmp_path, monkeypatch):
    # Tests run as root here, where chmod 000 does not stop reading: make Pillow's open fail instead.
    save(tmp_path / "good.png", rgb())
    save(tmp_path / "locked.png", rgb())
    real_open = Image.open

    def open_(path, *args, **kwargs):
        if Path(path).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(Image, "open", open_)
    source = validate_images(open_image_source(str(tmp_path)))
    assert ids(source) == ["good.png"]
    assert [(skipped.image_id, skipped.reason) for skipped in source.skipped] == [("locked.png", "permission denied")]


# --------------------------------------------------------------------------- --limit


def test_limit_is_stratified_and_deterministic(tmp_path):
    for label, count in enumerate((40, 3, 20)):
        for index in range(count):
            save(tmp_path / f"c{label}" / f"{index:02d}.png", rgb((2, 2)))
    first = open_image_source(str(tmp_path), limit=9)
    assert np.bincount(first.labels).tolist() == [3, 3, 3]
    assert ids(first) == ids(open_image_source(str(tmp_path), limit=9))
    assert ids(first) == sorted(ids(first))
    assert sorted(np.bincount(open_image_source(str(tmp_path), limit=30).labels)) == [3, 13, 14]
    assert len(open_image_source(str(tmp_path), limit=2).records) == 2
    assert len(open_image_source(str(tmp_path), limit=10_000).records) == 63
    with pytest.raises(CaeError, match="the image limit must be a positive number, got 0"):
        open_image_source(str(tmp_path), limit=0)


def test_round_robin_takes_the_classes_in_turn():
    labels = [2, 0, 0, 1, 1, 1, 0]
    assert round_robin(labels, 5).tolist() == [1, 3, 0, 2, 4]  # firsts in label order, then seconds
    assert round_robin(labels, 100).tolist() == [1, 3, 0, 2, 4, 6, 5]
    seeded = round_robin(labels, 3, np.random.default_rng(0))
    assert sorted(np.asarray(labels)[seeded].tolist()) == [0, 1, 2]  # one of each class, in a seeded order
    assert seeded.tolist() == round_robin(labels, 3, np.random.default_rng(0)).tolist()


def test_limit_on_unlabelled_folder(tmp_path):
    for index in range(20):
        save(tmp_path / f"{index:02d}.png", rgb((2, 2)))
    limited = open_image_source(str(tmp_path), limit=5)
    assert len(limited.records) == 5 and limited.labels is None
    assert ids(limited) != [f"{index:02d}.png" for index in range(5)]  # a seeded sample, not the first files


# --------------------------------------------------------------------------- torchvision benchmarks


def fake_benchmark(calls: list) -> Benchmark:
    def load(root: Path):
        calls.append(root)
        items = [(rgb((4, 4), (label * 100, 0, 0)), label) for label in (0, 1, 1, 0, 1)]
        return items, ["airplane", "auto/mobile"], None
    return Benchmark("fake", load)


def test_benchmark_is_materialised_once_as_files(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sources.BENCHMARKS, "cifar10", fake_benchmark(calls))
    source = open_image_source("CIFAR10", work_dir=tmp_path)
    assert source.name == "cifar10" and source.class_names == ["airplane", "auto_mobile"]
    assert ids(source) == ["airplane/00000.png", "airplane/00001.png",
                           "auto_mobile/00000.png", "auto_mobile/00001.png", "auto_mobile/00002.png"]
    assert all(record.path.is_file() for record in source.records)
    assert calls == [tmp_path / "downloads"]
    assert open_image_source("cifar10", work_dir=tmp_path, limit=2).labels.tolist() == [0, 1]
    assert len(calls) == 1  # the files are reused: no second download


def test_offline_benchmark_is_a_clear_error(tmp_path, monkeypatch):
    def offline(root: Path):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setitem(sources.BENCHMARKS, "stl10", Benchmark("fake", offline))
    with pytest.raises(CaeError, match="cannot download .*stl10.*point --images at a folder"):
        open_image_source("stl10", work_dir=tmp_path)
    assert not (tmp_path / "benchmarks" / "stl10").exists()


def test_cifar20_uses_the_superclass_labels(tmp_path, monkeypatch):
    class FakeCifar100(list):
        root, base_folder, test_list, meta = str(tmp_path), "cifar-100-python", [["test", "md5"]], {"filename": "meta"}

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "test").write_bytes(pickle.dumps({"coarse_labels": [1, 0, 1]}))
    (folder / "meta").write_bytes(pickle.dumps({"coarse_label_names": ["aquatic_mammals", "fish"]}))
    dataset = FakeCifar100([(rgb((2, 2)), 5), (rgb((2, 2)), 7), (rgb((2, 2)), 9)])
    monkeypatch.setattr(torchvision_sets, "_torchvision_set", lambda *args, **kwargs: lambda root: (dataset, [], None))
    source = open_image_source("cifar20", work_dir=tmp_path / "work")
    assert source.class_names == ["aquatic_mammals", "fish"]
    assert source.labels.tolist() == [0, 1, 1]


# --------------------------------------------------------------------------- shared data


@needs_data
def test_dataset_choices_lists_the_shared_image_sets():
    choices = dataset_choices()
    assert {"cifar10-test", "tiny-imagenet-val", "dtd10"} <= choices.keys()
    assert choices["dtd10"] == DATA_DIR / "images" / "dtd10"
    assert dataset_choices(Path("/nonexistent")) == {}


@needs_data
def test_tiny_imagenet_labels_and_class_names():
    source = open_image_source("tiny-imagenet-val")
    assert len(source.class_names) == 200 and len(source.records) == 10_000
    folders = sorted(path.name for path in (DATA_DIR / "images" / "tiny-imagenet-val").iterdir() if path.is_dir())
    crane = folders.index("n03126707")
    assert "crane" in source.class_names[crane]
    assert all(record.image_id.startswith("n03126707/") for record in source.records if record.label == crane)
    assert np.bincount(source.labels).tolist() == [50] * 200


@needs_data
def test_stratified_limit_on_cifar10_test():
    source = open_image_source(str(DATA_DIR / "images" / "cifar10-test"), limit=300)
    assert len(source.records) == 300 and source.name == "cifar10-test"
    assert np.bincount(source.labels, minlength=10).tolist() == [30] * 10
    assert source.class_names[:3] == ["airplane", "automobile", "bird"]
    checked = validate_images(source)
    assert len(checked.records) == 300 and checked.skipped == []
    assert load_image(checked.records[0].path).size == (32, 32)
