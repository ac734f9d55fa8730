"""Load check of the served app (a script that prints figures, not a test): several browser sessions at once,
each opening a real demo from its link (``/?demo=NAME`` loads it and runs every method), as users who were
sent the same link would.

    python3 scripts/load_check.py [--sessions 8] [--demo stl10-vitb16] [--timeout 900]

It serves ``app.py`` on a free loopback port (127.0.0.1 only; Chromium is told to resolve no other host),
opens ``--sessions`` headless Chromium sessions on it together, and reports: each session's seconds until its
page settled with the runs done, the errors seen (exception boxes, error messages, tracebacks in the server's
log; want none), and the server's peak memory (RSS of its process tree, sampled every 0.1 s). Bounded: one
page per session, ``--timeout`` seconds for the whole check. Needs the shared data (CAE_DATA_DIR), selenium,
psutil, /usr/bin/chromium and /usr/bin/chromedriver. Exit code 1 when any session failed.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOST = "127.0.0.1"
QUIET = 1.5  # seconds without Streamlit's running indicator for a page to count as settled
RUNS_DONE = re.compile(r"Runs: \d+ methods, K = \d+")  # the Home page's line once the demo's runs are done


@dataclass
class Session:
    index: int
    seconds: float | None = None  # until settled with the runs done
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(port: int, cache: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "CAE_CACHE_DIR": str(cache)}
    env.setdefault("CAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", HOST, "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_healthy(url: str, server: subprocess.Popen, deadline: float) -> None:
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start; see its log") from None
            time.sleep(0.5)


class PeakRss:
    """The peak summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process, self.interval = psutil.Process(pid), interval
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # a child that ended between the listing and the reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.Error:
                return

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def chromium(profile: Path, deadline: float):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1400,2200", f"--user-data-dir={profile}",
                     f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {HOST}"):  # nothing leaves the machine
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(max(10, int(deadline - time.monotonic())))
    return driver


def settled(driver, started: float, deadline: float) -> float:
    """Seconds from ``started`` until the page's runs are shown and Streamlit stayed idle for QUIET seconds."""
    quiet_since = None
    while time.monotonic() < deadline:
        try:
            running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
            done = RUNS_DONE.search(driver.find_element(By.TAG_NAME, "body").text)
        except StaleElementReferenceException:  # Streamlit redraws while a script runs
            running, done = True, None
        if running or not done:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET:
            return quiet_since - started
        time.sleep(0.25)
    raise TimeoutError("not settled before the check's deadline")


def run_session(session: Session, url: str, start: threading.Barrier, profile: Path, deadline: float) -> Session:
    driver = None
    try:
        driver = chromium(profile, deadline)
        start.wait(timeout=max(1.0, deadline - time.monotonic()))  # every browser is up: the sessions start together
        started = time.monotonic()
        driver.get(url)
        session.seconds = settled(driver, started, deadline)
        for selector, what in (('[data-testid="stException"]', "exception"),
                               ('[data-testid="stAlertContentError"]', "error message")):
            session.errors += [f"{what}: {box.text[:200]}" for box in driver.find_elements(By.CSS_SELECTOR, selector)]
    except (WebDriverException, TimeoutError, threading.BrokenBarrierError) as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        session.errors.append(f"{type(error).__name__}: {first_line}")
    finally:
        if driver is not None:
            driver.quit()
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions (default 8)")
    parser.add_argument("--demo", default="stl10-vitb16", help="the demo each session opens (default stl10-vitb16)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole check (default 900)")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 16:
        parser.error(f"--sessions must be between 1 and 16, got {args.sessions}")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        parser.error(f"needs {' and '.join(missing)} (apt-get install chromium chromium-driver)")

    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory(prefix="cae-load-") as work:
        work = Path(work)
        port, log = free_port(), work / "server.log"
        url = f"http://{HOST}:{port}"
        server = start_server(port, work / "cache", log)
        try:
            wait_healthy(url, server, deadline)
            with PeakRss(server.pid) as memory:
                idle = memory.now()
                start = threading.Barrier(args.sessions)
                sessions = [Session(i) for i in range(args.sessions)]
                began = time.monotonic()
                with ThreadPoolExecutor(args.sessions) as pool:
                    list(pool.map(lambda s: run_session(s, f"{url}/?demo={args.demo}", start,
                                                        work / f"profile-{s.index}", deadline), sessions))
                wall = time.monotonic() - began
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        server_log = log.read_text(errors="replace")

    tracebacks = server_log.count("Traceback (most recent call last)")
    print(f"load check: {args.sessions} concurrent sessions each opening {url}/?demo={args.demo} "
          f"({os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.1f})")
    for session in sessions:
        seconds = "did not settle" if session.seconds is None else f"{session.seconds:6.1f} s to settle"
        print(f"  session {session.index}: {seconds}; errors: {'; '.join(session.errors) or 'none'}")
    times = sorted(s.seconds for s in sessions if s.seconds is not None)
    if times:
        print(f"settle time: min {times[0]:.1f} s, median {times[len(times) // 2]:.1f} s, max {times[-1]:.1f} s; "
              f"all sessions done in {wall:.1f} s")
    print(f"server memory (RSS, process tree): {idle / 2**20:,.0f} MiB idle, peak {memory.peak / 2**20:,.0f} MiB")
    failed = [s for s in sessions if s.errors or s.seconds is None]
    print(f"errors: {sum(len(s.errors) for s in sessions)} in the pages, {tracebacks} traceback(s) in the "
          f"server's log; {len(failed)} of {len(sessions)} sessions failed")
    return 1 if failed or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
