"""Reading stored runs: two runs side by side, one run as a table other tools open, a run made again."""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

from ..errors import CaeError
from ..files import atomic_path
from ..inputs.bundle import FeaturesBundle
from ..method.methods import CaeConfig
from ..method.run import ClusteringResult, bank_arrays, run_method
from ..method.semantic_space import Bank
from .record import cluster_names, column_array
from .store import RunStore, StoredRun

EXPORT_FORMATS = ("parquet",)
TOP_TEXTS = 5  # nouns and captions per image in an export
COMPARED = ("acc", "nmi", "ari", "seconds")


@dataclass
class RunComparison:
    """Two runs of the same images: ``metrics`` (metric, a, b, b − a), the settings that differ, the ARI
    between their labelings and the contingency table between their clusters (rows a's, columns b's,
    each named ``cluster · its nouns``)."""

    a: StoredRun
    b: StoredRun
    metrics: pd.DataFrame
    settings: pd.DataFrame
    ari: float
    contingency: pd.DataFrame


def named_clusters(run: StoredRun) -> list[str]:
    """``3 · dog, puppy, hound`` for each of the run's clusters."""
    return [f"{cluster} · {name}" if name else str(cluster)
            for cluster, name in enumerate(cluster_names(run.manifest))]


def compare_runs(a: StoredRun, b: StoredRun) -> RunComparison:
    """Compare two runs made on the same bundle (a ``CaeError`` otherwise: their images differ)."""
    if a.manifest["bundle"]["fingerprint"] != b.manifest["bundle"]["fingerprint"]:
        raise CaeError(f"runs {a.id} ({a.dataset}) and {b.id} ({b.dataset}) were made on different bundles; "
                       "their clusters cannot be compared image by image")
    rows = [{"metric": name, "a": a.manifest["metrics"].get(name, np.nan), "b": b.manifest["metrics"].get(name, np.nan)}
            for name in COMPARED[:3]]
    rows.append({"metric": "seconds", "a": a.manifest["seconds"], "b": b.manifest["seconds"]})
    metrics = pd.DataFrame(rows)
    metrics["b - a"] = metrics["b"] - metrics["a"]
    described = {"method": (a.method, b.method), "K": (a.manifest["n_clusters"], b.manifest["n_clusters"]),
                 "seed": (a.manifest["seed"], b.manifest["seed"])}
    for key in sorted(set(a.manifest["settings"]) | set(b.manifest["settings"])):
        described[key] = (a.manifest["settings"].get(key), b.manifest["settings"].get(key))
    settings = pd.DataFrame([{"setting": key, "a": str(x), "b": str(y)} for key, (x, y) in described.items() if x != y],
                            columns=["setting", "a", "b"])
    labels_a, labels_b = a.assignments, b.assignments
    names_a, names_b = named_clusters(a), named_clusters(b)
    # every cluster a row or column, empty ones too, in cluster order
    table = pd.crosstab(np.asarray(names_a)[labels_a], np.asarray(names_b)[labels_b]).reindex(
        index=names_a, columns=names_b, fill_value=0)
    table.index.name, table.columns.name = f"{a.id} ({a.method})", f"{b.id} ({b.method})"
    return RunComparison(a, b, metrics, settings, float(adjusted_rand_score(labels_a, labels_b)), table)


def _lists(values: np.ndarray) -> pa.ListArray:
    """(N, k) values as an Arrow list column (k per row)."""
    n, k = values.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), pa.array(values.reshape(-1)))


def export_table(run: StoredRun, bundle: FeaturesBundle | None = None, n_texts: int = TOP_TEXTS) -> pa.Table:
    """One row per image: ``index, image_id, path`` (null without a picture folder), ``cluster,
    cluster_name, label`` (the class name, null where unknown), ``weight_<modality>`` per fused modality,
    ``top_nouns``/``top_captions`` (heaviest first) with ``top_noun_mass``/``top_caption_mass`` and the
    heaviest alone as ``top_noun``/``top_caption``, and ``<map>_x``/``<map>_y`` for each map computed."""
    bundle = bundle if bundle is not None else run.load_bundle()
    images = run.table("images")
    assignments = column_array(images, "cluster")
    names = cluster_names(run.manifest)
    root = run.image_root()
    ids = bundle.image_ids.astype(str)
    columns: dict[str, pa.Array] = {
        "index": pa.array(np.arange(bundle.n_images, dtype=np.int64)),
        "image_id": pa.array(ids),
        "path": pa.array([str(root / image_id) for image_id in ids] if root else [None] * bundle.n_images, pa.string()),
        "cluster": pa.array(assignments.astype(np.int32)),
        "cluster_name": pa.array([names[c] for c in assignments], pa.string()),
        "label": pa.array([bundle.label_name(int(label)) if label >= 0 else None for label in bundle.labels]
                          if bundle.labels is not None else [None] * bundle.n_images, pa.string()),
    }
    for modality in (run.manifest["fusion"] or {}).get("modalities", []):
        columns[f"weight_{modality}"] = images.column(f"weight_{modality}").combine_chunks()
    if run.manifest["alignments"]:
        texts = run.table("texts")
        for name in run.manifest["alignments"]:
            bank = Bank(name)
            selected = column_array(texts.filter(pc.equal(texts.column("bank"), name)), "bank_index")
            bank_texts = np.asarray(bank_arrays(bundle, bank)[1]).astype(str)
            top = column_array(images, f"{name}_top_text")[:, :n_texts]
            words = bank_texts[selected[top]]
            columns[f"top_{name}"] = _lists(words)
            columns[f"top_{bank.modality}_mass"] = _lists(column_array(images, f"{name}_top_weight")[:, :n_texts])
            columns[f"top_{bank.modality}"] = pa.array(words[:, 0])
    for map_name, xy in run.maps().items():
        columns[f"{map_name}_x"], columns[f"{map_name}_y"] = pa.array(xy[:, 0]), pa.array(xy[:, 1])
    return pa.table(columns)


def write_export(run: StoredRun, out: str | os.PathLike, export_format: str = "parquet",
                 bundle: FeaturesBundle | None = None) -> Path:
    """``export_table`` written to ``out`` (atomically)."""
    if export_format not in EXPORT_FORMATS:
        raise CaeError(f"unknown export format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    table = export_table(run, bundle)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out


def add_umap(store: RunStore, run: StoredRun, representation: str = "fused", bundle: FeaturesBundle | None = None,
             max_points: int = 5000, seed: int = 0) -> str:
    """Fit a UMAP of one of the run's representations (image, noun, caption, fused) and add it to the run
    as ``umap_<representation>``; its name."""
    from ..analysis.projection import project
    from ..analysis.similarity import representations

    bundle = bundle if bundle is not None else run.load_bundle()
    found = representations(run.result(bundle), bundle)
    if representation not in found:
        raise CaeError(f"run {run.id} ({run.method}) has no {representation!r} representation; "
                       f"it has {', '.join(found)}")
    coordinates, index = project(found[representation], seed=seed, max_points=max_points)
    name = f"umap_{representation}"
    store.add_map(run.id, name, coordinates[0], index)
    return name


@dataclass
class Rerun:
    """A run made again from its record: whether every image got the same cluster, and the new run."""

    identical: bool
    n_changed: int
    ari: float
    result: ClusteringResult


def rerun(run: StoredRun, bundle: FeaturesBundle | None = None, device: str | None = None) -> Rerun:
    """Run the recorded method, K, settings and seed again on the recorded bundle and compare the labels."""
    bundle = bundle if bundle is not None else run.load_bundle()
    config = CaeConfig(**run.manifest["settings"])
    if device is not None:
        config = dataclasses.replace(config, device=device)
    again = run_method(bundle, run.method, run.manifest["n_clusters"], config=config, seed=run.manifest["seed"])
    before = run.assignments
    changed = int(np.sum(before != again.assignments))
    return Rerun(changed == 0, changed, float(adjusted_rand_score(before, again.assignments)), again)
