"""How long listing, filtering and sorting the run store takes with many runs (a sweep makes hundreds).

    python tests/bench_runs.py [N]      # N small records (default 1000) in a temporary store

Prints seconds per record written (durable: flushed to disk) and per listing, filtered and sorted in
SQLite, then the same listing once the index is rebuilt from the records.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cae_core import CaeConfig, planted_bundle, run_method
from cae_core.runs import RunStore


def main(n: int) -> None:
    bundle = planted_bundle(n_images=200, n_classes=4, dim=32, n_nouns=60, n_captions=80, seed=0)
    results = [run_method(bundle, "cae", 4, config=CaeConfig(epsilon=epsilon), seed=0) for epsilon in (0.05, 0.1)]
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        start = time.perf_counter()
        for index in range(n):
            store.add(results[index % 2], bundle, source="api", bundle_name=f"set{index % 5}")
        written = time.perf_counter() - start
        print(f"{n} records written: {written / n * 1000:.1f} ms each (200 images, both banks)")
        for label, query in (("list all, newest first", {}),
                             ("filter dataset + setting, sort by acc", {"dataset": "set3", "settings": {"epsilon": 0.1},
                                                                        "sort": "acc"}),
                             ("filter method, sort by seconds, first 50", {"method": "cae", "sort": "seconds",
                                                                           "limit": 50})):
            start = time.perf_counter()
            rows = len(store.runs(**query))
            print(f"{label}: {rows} rows in {(time.perf_counter() - start) * 1000:.1f} ms")
        (Path(folder) / "index.sqlite").unlink()
        for extra in Path(folder).glob("index.sqlite-*"):
            extra.unlink()
        start = time.perf_counter()
        rows = len(RunStore(Path(folder)).runs())
        print(f"index rebuilt from {rows} records and listed in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
