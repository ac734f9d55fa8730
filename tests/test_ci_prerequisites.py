"""CI cannot pass without testing the real thing: scripts/check_prerequisites.py names what is missing, .ci/run
stops on it before installing anything, and under CI=true a session whose tests skipped for want of the data
or the browser fails (tests/ci_prerequisites.py). Each runs as CI runs it, in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts" / "check_prerequisites.py"
GUARD = 300  # seconds: a hang guard only, no test here depends on speed


def check(data_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *flags], capture_output=True, text=True, timeout=GUARD,
                          env={**os.environ, "CAE_DATA_DIR": str(data_dir)})


def test_an_empty_data_folder_is_refused_naming_each_missing_thing(tmp_path):
    completed = check(tmp_path, "--data")
    assert completed.returncode == 1
    for name in ("embeddings/stl10-vitb16/stl10-vitb16.npz", "embeddings/food101-vitb32/food101-vitb32.npz",
                 "embeddings/stl10-vitb16/images", "images/cifar10-test", "captions/flickr8k",
                 "captions/flickr30k"):
        assert f"missing: {tmp_path / name}" in completed.stderr, completed.stderr


def test_a_missing_data_folder_says_where_it_was_looked_for_and_how_to_point_at_it(tmp_path):
    completed = check(tmp_path / "nowhere", "--data")
    assert completed.returncode == 1
    assert f"missing: the shared data folder {tmp_path / 'nowhere'}" in completed.stderr
    assert "set CAE_DATA_DIR" in completed.stderr


def test_a_complete_data_folder_passes(tmp_path):
    for name in ("embeddings/stl10-vitb16/images", "images/cifar10-test", "captions/flickr8k",
                 "captions/flickr30k", "embeddings/food101-vitb32"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("stl10-vitb16", "food101-vitb32"):
        (tmp_path / "embeddings" / name / f"{name}.npz").write_bytes(b"")
    completed = check(tmp_path, "--data")
    assert completed.returncode == 0 and completed.stderr == ""
    (tmp_path / "captions" / "flickr30k").rmdir()  # one thing gone: named alone
    again = check(tmp_path, "--data")
    assert again.returncode == 1 and again.stderr.count("missing:") == 1 and "flickr30k" in again.stderr


def test_ci_run_without_shared_data_stops_before_installing_anything(tmp_path):
    checkout = tmp_path / "checkout"  # a clone with no shared/ beside it
    shutil.copytree(REPO / ".ci", checkout / ".ci")
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    completed = subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True,
                               timeout=GUARD, env={k: v for k, v in os.environ.items() if k != "CAE_DATA_DIR"})
    assert completed.returncode == 1
    assert f"missing: the shared data folder {tmp_path / 'shared' / 'data'}" in completed.stderr, completed.stderr
    # nothing else ran: no install, no tests, only the check's message
    assert completed.stdout == ""
    assert all(line.startswith(("CI prerequisites missing", "  missing: ")) for line in completed.stderr.splitlines())


SKIPPING_TESTS = '''
import pytest

def test_needs_the_data():
    pytest.skip("shared data not found at /nowhere (set CAE_DATA_DIR)")

def test_needs_the_browser():
    pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver")

@pytest.mark.skipif(True, reason="root reads files whatever their mode")
def test_skips_for_another_reason():
    pass

def test_runs():
    assert True
'''


@pytest.mark.parametrize("ci, code", [("true", 1), ("", 0)])
def test_ci_fails_a_session_whose_tests_skipped_for_want_of_data_or_browser(tmp_path, ci, code):
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    completed = subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_prerequisites", "-ra", "-p",
                                "no:cacheprovider", "test_skipping.py"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=GUARD,
                               env={**os.environ, "CI": ci, "PYTHONPATH": str(REPO / "tests")})
    assert completed.returncode == code, completed.stdout
    assert "1 passed, 3 skipped" in completed.stdout  # how many skipped, and (-ra) why:
    assert "SKIPPED [1] test_skipping.py:5: shared data not found at /nowhere" in completed.stdout
    failing = "CI=true: 2 test(s) skipped for want of the shared data or the browser, so this run FAILS"
    assert (failing in completed.stdout) == (ci == "true")
    if ci:
        assert "test_skipping.py::test_needs_the_browser" in completed.stdout
        assert "test_skips_for_another_reason" not in completed.stdout.split(failing)[1]
