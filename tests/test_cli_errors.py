"""``python -m cae_core`` as a user meets its failures: each one line on stderr naming the file or option and
what to do, a non-zero exit code, and a traceback only with ``--debug``. Every test runs the real command
in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from cae_core.inputs.bundle import save_bundle
from cae_core.inputs.synthetic import planted_bundle
from conftest import TEST_MODEL

UNWRITABLE = "/proc/nope/x"  # /proc refuses new folders, even to root


def cae(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh process; ``code`` runs first in that process (to plant a failing handler)."""
    if code is None:
        command = [sys.executable, "-m", "cae_core", *args]
    else:
        command = [sys.executable, "-c", textwrap.dedent(code) + "\nimport sys\nfrom cae_core.cli import main\n"
                   "sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def error_lines(completed: subprocess.CompletedProcess) -> list[str]:
    """stderr's lines that are not library warnings (open_clip logs one for random weights)."""
    return [line for line in completed.stderr.splitlines()
            if line.strip() and not line.startswith(("WARNING:", "warning:"))]


def assert_one_line(completed: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert completed.returncode == code, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    lines = error_lines(completed)
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    return save_bundle(planted_bundle(n_images=60, n_classes=2, n_nouns=20, n_captions=20, seed=1),
                       tmp_path_factory.mktemp("bundle") / "planted.npz")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(2):
        Image.new("RGB", (40, 40), (120 * i, 60, 200)).save(folder / f"{i}.png")
    return folder


def test_caption_with_a_model_that_is_not_coca_says_so(images, tmp_path):
    completed = cae("caption", "--model", TEST_MODEL, "--pretrained", "random", "--images", str(images),
                    "--out", str(tmp_path / "captions.csv"), "--device", "cpu")
    assert_one_line(completed, 2, f"{TEST_MODEL} is not a CoCa model", "coca_ViT-B-32")
    assert not (tmp_path / "captions.csv").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--batch-size", "0"], "--batch-size must be positive, got 0"),
    (["--max-tokens", "3"], "--max-tokens must be between 6 and 77"),
])
def test_caption_options_are_refused_before_the_model_loads(images, tmp_path, args, fragment):
    # an unknown model is named after the options are checked: the message proves the order
    completed = cae("caption", "--model", "no-such-model", "--images", str(images), "--out",
                    str(tmp_path / "c.csv"), *args)
    assert_one_line(completed, 2, fragment)


@pytest.mark.parametrize("command", ["cluster", "compare", "sweep"])
def test_an_unwritable_out_folder_is_named_before_any_work(bundle_path, command):
    completed = cae(command, "--features", str(bundle_path), "--clusters", "2", "--out", UNWRITABLE, "--quiet")
    assert_one_line(completed, 2, f"cannot write --out {UNWRITABLE}", "No such file or directory",
                    "choose a folder you can write to")
    assert completed.stdout == ""  # refused before clustering: nothing was run or printed


def test_an_unwritable_out_file_is_named_for_encode_and_caption(images):
    encode = cae("encode", "--images", str(images), "--model", TEST_MODEL, "--pretrained", "random",
                 "--out", UNWRITABLE + "/features.npz")
    assert_one_line(encode, 2, f"cannot write --out {UNWRITABLE}/features.npz")
    caption = cae("caption", "--images", str(images), "--model", TEST_MODEL, "--pretrained", "random",
                  "--out", UNWRITABLE + "/captions.csv")
    assert_one_line(caption, 2, f"cannot write --out {UNWRITABLE}/captions.csv")


def test_out_of_the_wrong_kind_is_named(bundle_path, images, tmp_path):
    as_folder = cae("cluster", "--features", str(bundle_path), "--clusters", "2", "--out", str(bundle_path))
    assert_one_line(as_folder, 2, f"--out {bundle_path} is a file; give a folder")
    as_file = cae("encode", "--images", str(images), "--model", TEST_MODEL, "--pretrained", "random",
                  "--out", str(tmp_path))
    assert_one_line(as_file, 2, f"--out {tmp_path} is a folder; give a file name")


@pytest.mark.parametrize("content", [None, b"not a bundle", b"PK\x03\x04broken zip"])
def test_a_bad_features_file_is_named(tmp_path, content):
    path = tmp_path / "features.npz"
    if content is not None:
        path.write_bytes(content)
    completed = cae("cluster", "--features", str(path), "--clusters", "2", "--out", str(tmp_path / "out"))
    assert_one_line(completed, 2, str(path))


def test_demo_clusters_zero_is_refused_not_replaced_by_the_default():
    completed = cae("demo", "--name", "planted", "--clusters", "0", "--quiet")
    assert_one_line(completed, 2, "got 0")


FAILING_CACHE_HANDLER = """
from cae_core import cli

def failing(args):
    raise {error}

cli.run_cache = failing
"""


def test_an_oserror_anywhere_is_one_line_naming_the_file_and_what_to_do():
    completed = cae("cache", code=FAILING_CACHE_HANDLER.format(
        error="PermissionError(13, 'Permission denied', '/data/locked/bank.txt')"))
    assert_one_line(completed, 2, "/data/locked/bank.txt: Permission denied", "check its permissions")
    full = cae("cache", code=FAILING_CACHE_HANDLER.format(error="OSError(28, 'No space left on device', '/c/x')"))
    assert_one_line(full, 2, "/c/x: No space left on device", "free some disk space")


def test_an_unexpected_error_says_to_rerun_with_debug_and_debug_shows_the_traceback():
    code = FAILING_CACHE_HANDLER.format(error="RuntimeError('the planted bug')")
    plain = cae("cache", code=code)
    assert_one_line(plain, 1, "unexpected RuntimeError: the planted bug", "rerun with --debug")
    for args in (["--debug", "cache"], ["cache", "--debug"]):  # before or after the command
        debug = cae(*args, code=code)
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr and "in failing" in debug.stderr
        assert debug.stderr.rstrip().splitlines()[-1] == "error: unexpected RuntimeError: the planted bug"


def test_a_bad_argument_is_refused_without_a_traceback(bundle_path, tmp_path):
    completed = cae("cluster", "--features", str(bundle_path), "--clusters", "many", "--out", str(tmp_path))
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert "expected a number of clusters or 'auto', got 'many'" in completed.stderr
