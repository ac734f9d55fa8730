"""The run store: every clustering run (app, ``cluster``, ``compare``, ``sweep``) recorded durably.

``store.py`` writes and indexes the records (Parquet arrays, a JSON manifest, a SQLite index);
``record.py`` turns a ``ClusteringResult`` into those files and back; ``report.py`` reads them:
two runs compared, a run exported as one Parquet table, a run made again.
"""

from .record import bundle_fingerprint, cluster_names
from .report import EXPORT_FORMATS, RunComparison, Rerun, add_umap, compare_runs, export_table, named_clusters, \
    rerun, write_export
from .store import SETTINGS, SORTABLE, SOURCES, RunStore, StoredRun, new_run_id, parse_setting, runs_dir

__all__ = [
    "EXPORT_FORMATS", "Rerun", "RunComparison", "RunStore", "SETTINGS", "SORTABLE", "SOURCES", "StoredRun", "add_umap",
    "bundle_fingerprint", "cluster_names", "compare_runs", "export_table", "named_clusters", "new_run_id",
    "parse_setting", "rerun",
    "runs_dir", "write_export",
]
