"""Under CI (``CI=true``), a test skipped for want of the shared data or the browser fails the session: CI must
test the real thing. Elsewhere such skips are reported (``-ra``) and the run passes. The hooks are imported by
conftest.py; the module also loads as a plugin (``-p ci_prerequisites``)."""

from __future__ import annotations

import os
import re

import pytest

# the skip reasons of tests that need ../shared/data (CAE_DATA_DIR) or Chromium and chromedriver
PREREQUISITE = re.compile(r"CAE_DATA_DIR|shared data|CIFAR|real CLIP features|real demo bundle|chromium|"
                          r"chromedriver|selenium", re.IGNORECASE)
_skips: list[str] = []  # "node id: reason", this session's


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _record(report) -> None:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if report.skipped and PREREQUISITE.search(reason):
        _skips.append(f"{report.nodeid or 'collection'}: {reason}")


def pytest_runtest_logreport(report) -> None:
    _record(report)


def pytest_collectreport(report) -> None:
    _record(report)  # a module that skips itself (test_browser.py without Chromium)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session) -> None:
    if _in_ci() and _skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _in_ci() and _skips:
        terminalreporter.write_line(f"CI=true: {len(_skips)} test(s) skipped for want of the shared data or the "
                                    "browser, so this run FAILS (scripts/check_prerequisites.py names what is "
                                    "missing):", red=True)
        for line in _skips[:20]:
            terminalreporter.write_line(f"  {line}")
