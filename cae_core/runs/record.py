"""A run as files, and back: the manifest (JSON) and the arrays (Parquet) of one ``ClusteringResult``.

What is stored, and why: everything a page draws that the bundle alone cannot give back, so a run
reopens exactly as it was made without recomputing it (a rerun on another machine or device need not
reproduce k-means bit for bit). Per image (``images.parquet``): the cluster, the semantic-space
centre, the fusion weights and prototype cosines per modality, and per bank the top matches (text,
mass, cosine) and the correspondence itself (float32, as computed). Per selected text
(``texts.parquet``): its bank row, centre, confidence and share of the plan's mass; per bank text
(``bank.parquet``): its preferred centre and confidence; the centres (``centres.parquet``); UMAP
coordinates added later (``maps.parquet``). Texts and their embeddings are read back from the bundle
by row. Recomputed on opening, because they follow from the stored arrays by cheap deterministic steps:
the fused features (``fuse`` on the stored correspondences; the stored weights are kept), LAIC's
relation rows and MCA's hierarchy filter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import warnings
import weakref
from importlib import metadata as package_metadata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.alignment import Alignment
from ..method.fusion import Fusion
from ..method.hierarchy import hierarchy_filter
from ..method.methods import METHODS, CaeConfig, RelationRows
from ..method.relation import relation_features
from ..method.run import AlignedBank, ClusteringResult, ClusterTexts, bank_arrays, fuse_for, text_views
from ..method.semantic_space import Bank, SemanticSpace, TextSelection

FORMAT = 1
TABLES = ("images", "texts", "bank", "centres")  # maps.parquet comes later, when a map is computed
PACKAGES = ("numpy", "torch", "open_clip_torch", "scikit-learn", "POT", "pyarrow", "umap-learn", "streamlit")

_fingerprints: dict[int, tuple[weakref.ref, str]] = {}


def bundle_fingerprint(bundle: FeaturesBundle) -> str:
    """A content hash of the bundle's images, labels and banks (32 hex digits), computed once per object.

    It names the data a run was made on: reopening checks that the bundle found is that one."""
    known = _fingerprints.get(id(bundle))
    if known is not None and known[0]() is bundle:
        return known[1]
    digest = hashlib.blake2b(digest_size=16)
    for name in ("image_embeddings", "labels", "image_ids", "noun_embeddings", "nouns", "caption_embeddings",
                 "captions"):
        array = getattr(bundle, name)
        if array is None:
            digest.update(f"{name}:none;".encode())
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    value = digest.hexdigest()
    _fingerprints[id(bundle)] = (weakref.ref(bundle, lambda _, key=id(bundle): _fingerprints.pop(key, None)), value)
    return value


def package_versions() -> dict[str, str]:
    """Python's and the numerical packages' versions (those installed)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def _column(array: np.ndarray) -> pa.Array:
    """A numpy (N,) or (N, k) array as an Arrow column (a fixed-size list per row for 2-D)."""
    array = np.ascontiguousarray(array)
    if array.ndim == 1:
        return pa.array(array)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """A column written by ``_column`` as numpy again, same dtype and shape."""
    column = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False)


def manifest_of(result: ClusteringResult) -> dict:
    """The run's scalars: method, K, seed, settings, metrics, seconds, cluster names, the pieces'
    descriptions (the bundle, the source and the time are added by the store)."""
    space = result.semantic_space
    fusion = result.fusion
    return {
        "format": FORMAT,
        "method": result.method,
        "n_clusters": int(result.n_clusters),
        "seed": int(result.seed),
        "settings": dataclasses.asdict(result.config),
        "metrics": {key: float(value) for key, value in result.metrics.items()},
        "stage_seconds": {key: float(value) for key, value in result.stage_seconds.items()},
        "seconds": float(sum(result.stage_seconds.values())),
        "n_images": int(len(result.assignments)),
        "cluster_texts": [entry.to_dict() for entry in result.cluster_texts],
        "space": None if space is None else {"banks": [bank.value for bank in space.selections],
                                             "hierarchy": space.hierarchy is not None},
        "alignments": {bank.value: {"kind": part.alignment.kind, "n_iter": int(part.alignment.n_iter),
                                    "marginal_error": float(part.alignment.marginal_error),
                                    "converged": bool(part.alignment.converged),
                                    "temperature": float(part.alignment.temperature),
                                    "text_usage_dtype": part.alignment.text_usage.dtype.str}
                       for bank, part in result.aligned.items()},
        "fusion": None if fusion is None else {"modalities": list(fusion.modalities), "weighting": fusion.weighting,
                                               "centred": bool(fusion.centred), "combine": fusion.combine,
                                               "split_half": float(fusion.split_half),
                                               "offset": [float(value) for value in fusion.offset]},
        "versions": package_versions(),
    }


def result_tables(result: ClusteringResult) -> dict[str, pa.Table]:
    """The run's arrays as Arrow tables, by file name (without ``.parquet``)."""
    images: dict[str, pa.Array] = {"cluster": _column(result.assignments)}
    space = result.semantic_space
    if space is not None:
        images["centre"] = _column(space.centre_of_image)
    if result.fusion is not None:
        for k, modality in enumerate(result.fusion.modalities):
            images[f"weight_{modality}"] = _column(result.fusion.weights[:, k])
            images[f"prototype_cosine_{modality}"] = _column(result.fusion.prototype_cosine[:, k])
            images[f"agreement_{modality}"] = _column(result.fusion.agreement[:, k])
    for bank, part in result.aligned.items():
        alignment = part.alignment
        for name in ("top_text", "top_weight", "top_similarity", "correspondence"):
            images[f"{bank.value}_{name}"] = _column(getattr(alignment, name))
    tables = {"images": pa.table(images)}
    if space is None:
        return tables
    texts, bank_rows = [], []
    for bank, selection in space.selections.items():
        part = result.aligned.get(bank)
        # one column for every bank: float64 holds any bank's usage exactly (its dtype is in the manifest)
        usage = part.alignment.text_usage.astype(np.float64) if part is not None else np.full(len(selection), np.nan)
        potential = part.alignment.column_potential if part is not None else None
        potential = np.full(len(selection), np.nan, np.float32) if potential is None else potential
        texts.append(pa.table({"bank": pa.array([bank.value] * len(selection), pa.string()),
                               "bank_index": _column(selection.bank_index), "centre": _column(selection.centre),
                               "score": _column(selection.score), "text_usage": _column(usage),
                               "column_potential": _column(potential)}))
        bank_rows.append(pa.table({"bank": pa.array([bank.value] * len(selection.bank_centre), pa.string()),
                                   "bank_centre": _column(selection.bank_centre),
                                   "bank_score": _column(selection.bank_score)}))
    tables["texts"] = pa.concat_tables(texts)
    tables["bank"] = pa.concat_tables(bank_rows)
    tables["centres"] = pa.table({"centre": _column(space.centres)})
    return tables


def _rows_of(table: pa.Table, bank: Bank) -> pa.Table:
    return table.filter(pc.equal(table.column("bank"), bank.value))


def rebuild_result(manifest: dict, tables: dict[str, pa.Table], bundle: FeaturesBundle) -> ClusteringResult:
    """The ``ClusteringResult`` a record holds, on the bundle it was made on."""
    method = manifest["method"]
    if method not in METHODS:
        raise CaeError(f"the run's method {method!r} is not one this version knows ({', '.join(METHODS)})")
    spec = METHODS[method]
    config = CaeConfig(**manifest["settings"])
    images = tables["images"]
    if images.num_rows != bundle.n_images:
        raise CaeError(f"the run has {images.num_rows} images, the bundle {bundle.n_images}")
    space = None
    if manifest["space"] is not None:
        selections = {}
        for bank in map(Bank, manifest["space"]["banks"]):
            rows, bank_rows = _rows_of(tables["texts"], bank), _rows_of(tables["bank"], bank)
            embeddings, texts = bank_arrays(bundle, bank)
            index = column_array(rows, "bank_index")
            selections[bank] = TextSelection(index, column_array(rows, "centre"), column_array(rows, "score"),
                                             np.asarray(texts)[index], np.asarray(embeddings)[index],
                                             column_array(bank_rows, "bank_centre"),
                                             column_array(bank_rows, "bank_score"))
        hierarchy = None
        if manifest["space"]["hierarchy"]:
            hierarchy = hierarchy_filter(bundle.image_embeddings, bundle.noun_embeddings, bundle.noun_synsets,
                                         config.device)
        space = SemanticSpace(column_array(tables["centres"], "centre"), column_array(images, "centre"), selections,
                              hierarchy)
    aligned = {}
    for name, described in manifest["alignments"].items():
        bank = Bank(name)
        rows = _rows_of(tables["texts"], bank)
        usage = column_array(rows, "text_usage").astype(described["text_usage_dtype"])
        potential = column_array(rows, "column_potential")
        alignment = Alignment(described["kind"], column_array(images, f"{name}_correspondence"),
                              column_array(images, f"{name}_top_text"), column_array(images, f"{name}_top_weight"),
                              column_array(images, f"{name}_top_similarity"), usage, described["n_iter"],
                              described["marginal_error"], described["converged"], described["temperature"],
                              None if np.isnan(potential).all() else potential)
        aligned[bank] = AlignedBank(bank, space.selections[bank], alignment)
    fusion, features = None, bundle.image_embeddings
    if isinstance(spec.representation, RelationRows):
        features = relation_features(bundle.image_embeddings, space.selections[spec.banks[0]].embeddings,
                                     config.device)
    elif manifest["fusion"] is not None:
        remade = fuse_for(spec, config, bundle.image_embeddings, text_views(spec, bundle, aligned),
                          manifest["seed"])
        described = manifest["fusion"]
        modalities = tuple(described["modalities"])
        stack = lambda prefix: np.stack([column_array(images, f"{prefix}_{m}") for m in modalities], axis=1)
        weights = stack("weight")
        if not np.allclose(remade.weights, weights, rtol=0, atol=1e-6):
            # another machine's arithmetic: the run's weights are kept, the features are this machine's
            warnings.warn(f"the fused features remade here differ from the run's (largest weight difference "
                          f"{np.abs(remade.weights - weights).max():.2g})", stacklevel=2)
        fusion = Fusion(modalities, weights, remade.features, stack("prototype_cosine"), stack("agreement"),
                        np.asarray(described["offset"], dtype=np.float32), described["weighting"], described["centred"],
                        described["combine"], described["split_half"])
        features = fusion.features
    labels = bundle.labels
    return ClusteringResult(method, manifest["n_clusters"], manifest["seed"], config,
                            column_array(images, "cluster"), features, labels, dict(manifest["metrics"]), space,
                            aligned, fusion, [ClusterTexts(**entry) for entry in manifest["cluster_texts"]],
                            dict(manifest["stage_seconds"]))


def cluster_names(manifest: dict, n_words: int = 3) -> list[str]:
    """Each cluster's name: its heaviest nouns (else captions), as the pages name clusters."""
    return [", ".join(entry["nouns"][:n_words] or entry["captions"][:1]) for entry in manifest["cluster_texts"]]
