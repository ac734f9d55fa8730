"""The run store: every clustering run recorded durably, indexed in SQLite.

Layout under ``runs_dir()``::

    records/<id>/manifest.json, images.parquet, texts.parquet, bank.parquet, centres.parquet[, maps.parquet]
    bundles/<fingerprint>.npz     bundles that had no file (encoded in the app, made in memory)
    index.sqlite                  one row per record: what listing, filtering and sorting read

A record is written into a temporary folder beside ``records/``, flushed to disk, and renamed into
place (``files.atomic_folder``); only then is its index row inserted, in one transaction. So a process
killed mid-write leaves a hidden ``.partial`` folder that nothing lists (removed a day later), never
half a record; a process killed between the rename and the insert leaves a record the next listing
indexes. The records are the truth: the index is rebuilt from them when it is missing or unreadable,
and rows whose record is gone are dropped. A record that cannot be read is reported and skipped.
SQLite in WAL mode lets any number of sessions and processes read while one writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CaeError
from ..files import PARTIAL_SUFFIX, atomic_folder, atomic_path
from ..inputs.bundle import FeaturesBundle, load_bundle, save_bundle
from ..inputs.cache import cache_dir
from ..method.methods import CaeConfig
from ..method.run import ClusteringResult
from .record import TABLES, bundle_fingerprint, column_array, manifest_of, rebuild_result, result_tables

MANIFEST = "manifest.json"
MAPS = "maps"
STALE_PARTIAL_S = 24 * 3600  # a .partial folder this old belongs to a writer that died
SORTABLE = ("created", "dataset", "method", "n_clusters", "seed", "acc", "nmi", "ari", "seconds", "source")
SETTINGS = tuple(field.name for field in dataclasses.fields(CaeConfig))  # runs sort by these too
SOURCES = ("app", "cluster", "compare", "sweep", "api")
_COLUMNS = ("id", "created", "dataset", "fingerprint", "method", "n_clusters", "seed", "acc", "nmi", "ari",
            "seconds", "source", "batch", "settings")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, dataset TEXT, fingerprint TEXT, method TEXT, n_clusters INTEGER,
    seed INTEGER, acc REAL, nmi REAL, ari REAL, seconds REAL, source TEXT, batch TEXT, settings TEXT);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_method ON runs (method);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs (dataset);
CREATE INDEX IF NOT EXISTS runs_batch ON runs (batch);
"""


def runs_dir() -> Path:
    """Where runs are kept: ``$CAE_RUNS_DIR``, else ``<cache>/runs`` (``$CAE_CACHE_DIR/runs``)."""
    if os.environ.get("CAE_RUNS_DIR"):
        return Path(os.environ["CAE_RUNS_DIR"]).expanduser()
    return cache_dir() / "runs"


def parse_setting(text: str) -> tuple[str, object]:
    """``"epsilon=0.05"`` -> ``("epsilon", 0.05)``, ``"fusion=paper"`` -> ``("fusion", "paper")``: a filter
    on the settings that ``RunStore.runs`` takes."""
    key, separator, value = text.strip().partition("=")
    key, value = key.strip(), value.strip()
    if not separator or not key.isidentifier():
        raise CaeError(f"expected SETTING=VALUE, e.g. epsilon=0.05, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a word


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sorts by time, unique across processes (24 random bits)."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class StoredRun:
    """One record: its manifest, and its arrays read on demand."""

    id: str
    path: Path
    manifest: dict

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def dataset(self) -> str:
        return self.manifest["bundle"]["name"]

    def table(self, name: str) -> pa.Table:
        """One of the record's Parquet tables (``images``, ``texts``, ``bank``, ``centres``, ``maps``)."""
        try:
            return pq.read_table(self.path / f"{name}.parquet")
        except (OSError, pa.ArrowException) as error:
            raise CaeError(f"run {self.id} is damaged: {name}.parquet cannot be read ({error})") from None

    @property
    def assignments(self) -> np.ndarray:
        return column_array(self.table("images"), "cluster")

    def maps(self) -> dict[str, np.ndarray]:
        """The maps computed for this run: name -> (N, 2) coordinates, NaN for images not fitted."""
        if not (self.path / f"{MAPS}.parquet").is_file():
            return {}
        table = self.table(MAPS)
        names = [column[:-2] for column in table.column_names if column.endswith("_x")]
        return {name: np.column_stack([column_array(table, f"{name}_x"), column_array(table, f"{name}_y")])
                for name in names}

    def load_bundle(self) -> FeaturesBundle:
        """The bundle the run was made on, from the file it recorded (or the demo it named), checked by content."""
        from ..inputs.demos import load_demo

        described = self.manifest["bundle"]
        path = described.get("path")
        if path and Path(path).is_file():
            bundle = load_bundle(path)
        elif described.get("demo"):
            bundle = load_demo(described["demo"])[0]
        else:
            raise CaeError(f"run {self.id}'s bundle is no longer at {path}; put it back to open the run")
        if bundle_fingerprint(bundle) != described["fingerprint"]:
            raise CaeError(f"the bundle at {path or described.get('demo')} changed since run {self.id} was made "
                           "(its content fingerprint differs)")
        return bundle

    def image_root(self) -> Path | None:
        root = self.manifest["bundle"].get("image_root")
        return Path(root) if root else None

    def result(self, bundle: FeaturesBundle | None = None) -> ClusteringResult:
        """The run as a ``ClusteringResult``, exactly as it was made (``bundle``: the run's own, already loaded)."""
        bundle = bundle if bundle is not None else self.load_bundle()
        tables = {name: self.table(name) for name in TABLES if (self.path / f"{name}.parquet").is_file()}
        try:
            return rebuild_result(self.manifest, tables, bundle)
        except (KeyError, TypeError, ValueError, pa.ArrowException) as error:
            if isinstance(error, CaeError):
                raise
            raise CaeError(f"run {self.id} is damaged: {error.__class__.__name__}: {error}") from None


@dataclass
class RunStore:
    """The runs under ``root`` (default ``runs_dir()``). Cheap to make: every call opens its own connection,
    so one store may be shared by threads, and any number of stores by processes."""

    root: Path = field(default_factory=runs_dir)
    problems: list[str] = field(default_factory=list)  # records found unreadable, one line each

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.records = self.root / "records"

    # --- the index ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index in a transaction (committed on success); an unreadable index file is set
        aside and rebuilt from the records."""
        self.records.mkdir(parents=True, exist_ok=True)
        path = self.root / "index.sqlite"
        try:
            connection = self._connect(path)
        except sqlite3.DatabaseError as error:
            aside = path.with_name(f"index.sqlite.unreadable-{int(time.time())}")
            path.rename(aside)
            self.problems.append(f"the run index was unreadable ({error}); set aside as {aside.name}, rebuilt")
            connection = self._connect(path)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=60)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    @staticmethod
    def _row(manifest: dict) -> tuple:
        metrics = manifest["metrics"]
        return (manifest["id"], manifest["created"], manifest["bundle"]["name"], manifest["bundle"]["fingerprint"],
                manifest["method"], manifest["n_clusters"], manifest["seed"], metrics.get("acc"), metrics.get("nmi"),
                metrics.get("ari"), manifest["seconds"], manifest["source"], manifest.get("batch"),
                json.dumps(manifest["settings"], sort_keys=True))

    def _read_manifest(self, run_id: str) -> dict:
        path = self.records / run_id / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            self._row(manifest)  # every field the index needs is there
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CaeError(f"run {run_id} is damaged: its manifest cannot be read "
                           f"({error.__class__.__name__}: {error})") from None
        if manifest["id"] != run_id:
            raise CaeError(f"run {run_id} is damaged: its manifest names run {manifest['id']}")
        return manifest

    def sync(self) -> None:
        """Make the index match the records: index records it lacks (a writer killed before its insert, a
        rebuilt index), drop rows whose record is gone, remove writers' leftovers older than a day.
        Unreadable records are skipped and listed in ``problems``."""
        with self._index() as connection:
            indexed = {row[0] for row in connection.execute("SELECT id FROM runs")}
            on_disk = set()
            for entry in os.scandir(self.records):
                if not entry.name.startswith("."):
                    on_disk.add(entry.name)
                elif entry.name.endswith(PARTIAL_SUFFIX) and time.time() - entry.stat().st_mtime > STALE_PARTIAL_S:
                    shutil.rmtree(entry.path, ignore_errors=True)
            for run_id in sorted(on_disk - indexed):
                try:
                    connection.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(_COLUMNS))})",
                                       self._row(self._read_manifest(run_id)))
                except CaeError as error:
                    self.problems.append(str(error))
            gone = indexed - on_disk
            connection.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in gone])

    def rebuild_index(self) -> int:
        """Index every readable record afresh; the number indexed."""
        with self._index() as connection:
            connection.execute("DELETE FROM runs")
        self.sync()
        with self._index() as connection:
            return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    # --- writing --------------------------------------------------------------------------------------

    def add(self, result: ClusteringResult, bundle: FeaturesBundle, *, source: str, bundle_name: str = "",
            bundle_path: str | os.PathLike | None = None, demo: str | None = None,
            image_root: str | os.PathLike | None = None, batch: str | None = None,
            random_weights: bool = False) -> str:
        """Record ``result`` (made on ``bundle``) and return its id.

        ``bundle_path`` is the file the bundle was read from; without one (and without ``demo``, a demo
        that rebuilds it) the bundle is saved once under ``bundles/``, so the run can be reopened and rerun.
        ``source`` says what made the run; ``batch`` groups runs made together (the app's methods, a
        ``compare``, a sweep's point and seed); ``random_weights`` marks embeddings of an untrained model."""
        if source not in SOURCES:
            raise CaeError(f"unknown run source {source!r}; choose one of {', '.join(SOURCES)}")
        if len(result.assignments) != bundle.n_images:
            raise CaeError(f"the run has {len(result.assignments)} images, the bundle {bundle.n_images}")
        fingerprint = bundle_fingerprint(bundle)
        bundle_name = bundle_name or (Path(bundle_path).stem if bundle_path else demo) or "bundle"
        if bundle_path is None and demo is None:
            bundle_path = self.root / "bundles" / f"{fingerprint}.npz"
            if not bundle_path.is_file():
                save_bundle(bundle, bundle_path)
        run_id = new_run_id()
        manifest = {"id": run_id, "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    "source": source, "batch": batch,
                    "bundle": {"name": bundle_name,
                               "fingerprint": fingerprint, "n_images": bundle.n_images, "demo": demo,
                               "path": str(Path(bundle_path).resolve()) if bundle_path else None,
                               "image_root": str(Path(image_root).resolve()) if image_root else None,
                               "random_weights": bool(random_weights)},
                    **manifest_of(result)}
        tables = result_tables(result)

        def fill(folder: Path) -> None:
            for name, table in tables.items():
                pq.write_table(table, folder / f"{name}.parquet")
            # the manifest last: a record folder without one was never finished
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")

        atomic_folder(self.records / run_id, fill, durable=True)
        with self._index() as connection:
            connection.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(_COLUMNS))})",
                               self._row(manifest))
        return run_id

    def add_all(self, results: dict[str, ClusteringResult], bundle: FeaturesBundle, **where) -> dict[str, str]:
        """Record runs made together (one batch); method -> run id."""
        batch = new_run_id()
        return {method: self.add(result, bundle, batch=batch, **where) for method, result in results.items()}

    def add_map(self, run_id: str, name: str, coordinates: np.ndarray, index: np.ndarray) -> None:
        """Add (or replace) a map of the run: ``coordinates`` (n, 2) of the images ``index`` (others get NaN).
        Sessions adding maps to one run at once take turns (a lock file), so none is lost."""
        run = self.get(run_id)
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise CaeError(f"a map name is letters, digits, - and _; got {name!r}")
        coordinates, index = np.asarray(coordinates, dtype=np.float32), np.asarray(index, dtype=np.int64)
        n_images = run.manifest["n_images"]
        if coordinates.shape != (len(index), 2) or (len(index) and (index.min() < 0 or index.max() >= n_images)):
            raise CaeError(f"a map needs (n, 2) coordinates of n images among {n_images}")
        with open(run.path / ".maps.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            columns = {}
            if (run.path / f"{MAPS}.parquet").is_file():
                existing = run.table(MAPS)
                columns = {column: existing.column(column) for column in existing.column_names}
            for axis in (0, 1):
                full = np.full(n_images, np.nan, dtype=np.float32)
                full[index] = coordinates[:, axis]
                columns[f"{name}_{'xy'[axis]}"] = pa.array(full)
            with atomic_path(run.path / f"{MAPS}.parquet") as tmp:
                pq.write_table(pa.table(columns), tmp)

    def delete(self, run_id: str) -> None:
        """Remove a run: its folder leaves ``records/`` in one rename, then its index row."""
        run_id = self.resolve(run_id)
        folder = self.records / run_id
        doomed = self.records / f".{run_id}.{secrets.token_hex(3)}.deleted"
        with contextlib.suppress(FileNotFoundError):
            folder.rename(doomed)
        with self._index() as connection:
            connection.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(doomed, ignore_errors=True)

    # --- reading --------------------------------------------------------------------------------------

    def resolve(self, run_id: str) -> str:
        """The full id of the run ``run_id`` names (a unique prefix is enough)."""
        run_id = str(run_id).strip()
        if not run_id or not all(c.isalnum() or c == "-" for c in run_id):
            raise CaeError(f"not a run id: {run_id!r}")
        if (self.records / run_id / MANIFEST).is_file():
            return run_id
        self.sync()
        with self._index() as connection:
            found = [row[0] for row in connection.execute("SELECT id FROM runs WHERE id LIKE ? ORDER BY id",
                                                           (run_id + "%",))]
        if len(found) == 1:
            return found[0]
        if not found:
            raise CaeError(f"no run {run_id!r} in {self.root} (python -m cae_core runs lists them)")
        raise CaeError(f"{run_id!r} names {len(found)} runs ({', '.join(found[:5])}…): give more of the id")

    def get(self, run_id: str) -> StoredRun:
        """The run ``run_id`` names; a damaged one is a ``CaeError`` saying so."""
        run_id = self.resolve(run_id)
        return StoredRun(run_id, self.records / run_id, self._read_manifest(run_id))

    def runs(self, *, dataset: str | Sequence[str] | None = None, method: str | Sequence[str] | None = None,
             source: str | None = None, batch: str | None = None, fingerprint: str | None = None,
             settings: dict | None = None, sort: str = "created", descending: bool | None = None,
             limit: int | None = None) -> pd.DataFrame:
        """The runs, one row each (id, created, dataset, method, n_clusters, seed, acc, nmi, ari, seconds,
        source, batch, settings as JSON), filtered and sorted in SQLite. ``settings`` keeps the runs
        whose settings have these values (e.g. ``{"epsilon": 0.05}``); ``sort`` is a column or a setting;
        ``descending`` defaults to True for time and scores, False for the rest."""
        if sort not in SORTABLE + SETTINGS:
            raise CaeError(f"cannot sort runs by {sort!r}; choose one of {', '.join(SORTABLE + SETTINGS)}")
        if limit is not None and limit < 1:
            raise CaeError(f"the number of runs to list must be positive, got {limit}")
        clauses, values = [], []
        for column, wanted in (("dataset", dataset), ("method", method)):
            if wanted:
                wanted = [wanted] if isinstance(wanted, str) else list(wanted)
                clauses.append(f"{column} IN ({','.join('?' * len(wanted))})")
                values += wanted
        for column, wanted in (("source", source), ("batch", batch), ("fingerprint", fingerprint)):
            if wanted:
                clauses.append(f"{column} = ?")
                values.append(wanted)
        for key, wanted in (settings or {}).items():
            if not key.isidentifier():
                raise CaeError(f"not a setting: {key!r}")
            clauses.append(f"json_extract(settings, '$.{key}') IS ?")
            values.append(wanted)
        if descending is None:
            descending = sort in ("created", "acc", "nmi", "ari", "seconds")
        key = sort if sort in SORTABLE else f"json_extract(settings, '$.{sort}')"
        query = (f"SELECT {', '.join(_COLUMNS)} FROM runs" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
                 + f" ORDER BY {key} IS NULL, {key} {'DESC' if descending else 'ASC'}, id"
                 + (f" LIMIT {int(limit)}" if limit else ""))
        self.sync()
        with self._index() as connection:
            rows = connection.execute(query, values).fetchall()
        return pd.DataFrame(rows, columns=list(_COLUMNS))

    def values(self, column: str) -> list:
        """The distinct values of an index column (``dataset``, ``method``, ``source``), sorted."""
        if column not in SORTABLE:
            raise CaeError(f"not a run column: {column!r}")
        self.sync()
        with self._index() as connection:
            return [row[0] for row in connection.execute(f"SELECT DISTINCT {column} FROM runs ORDER BY {column}")]
