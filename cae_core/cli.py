"""``python -m cae_core``: encode, caption, cluster, compare, sweep, demo, bench, cache, runs.

Every request that cannot be met ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from .errors import CaeError
from .inputs.bundle import load_bundle, save_bundle
from .inputs.cache import cache_dir, clear_cache, list_entries
from .inputs.encode import RANDOM_WEIGHTS, encode_dataset
from .inputs.encoders import load_clip
from .inputs.presets import PRESETS, estimate_presets
from .inputs.sources import open_image_source
from .method.cluster_count import CLUSTER_COUNT_CRITERIA, DEFAULT_RANGE, choose_n_clusters
from .method.fusion import COMBINES
from .method.methods import FUSION_CHOICES, METHODS, SPACE_CHOICES, CaeConfig
from .method.run import run_method, run_methods

AUTO = "auto"  # --clusters auto: estimate K


def _progress_printer(quiet: bool):
    if quiet:
        return None
    last = {}

    def report(stage: str, fraction: float, message: str) -> None:
        if fraction in (0.0, 1.0) and last.get(stage) != fraction:
            last[stage] = fraction
            print(f"[{stage}] {message}", file=sys.stderr)
    return report


# the run options that a sweep may give as comma-separated lists: (flag, CaeConfig field, type)
_METHOD_OPTIONS = (("--epsilon", "epsilon", float), ("--gamma", "gamma", float), ("--fusion", "fusion", str),
                   ("--combine", "combine", str), ("--centres", "n_centres", int),
                   ("--train-size", "train_size", int), ("--texts-per-centre", "texts_per_centre", int),
                   ("--space", "space", str))


def _config(args: argparse.Namespace) -> CaeConfig:
    given = {field: getattr(args, field) for _, field, _ in _METHOD_OPTIONS if getattr(args, field) is not None}
    return CaeConfig(device=args.device, **given)


def _cluster_count(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of clusters or {AUTO!r}, got {text!r}") from None


def _k_range(text: str) -> tuple[int, int]:
    low, separator, high = text.partition(":")
    try:
        return int(low), int(high if separator else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, e.g. 2:30, got {text!r}") from None


def _add_common_options(parser: argparse.ArgumentParser, auto: bool = False) -> None:
    parser.add_argument("--features", required=True, type=Path, help="features bundle (.npz)")
    if auto:
        parser.add_argument("--clusters", required=True, type=_cluster_count,
                            help=f"number of clusters K, or {AUTO!r}: estimated over --k-range by --k-criterion")
        low, high = DEFAULT_RANGE
        parser.add_argument("--k-range", type=_k_range, default=DEFAULT_RANGE, metavar="LOW:HIGH",
                            help=f"the K tried with --clusters auto (default {low}:{high})")
        parser.add_argument("--k-criterion", choices=CLUSTER_COUNT_CRITERIA, default=CLUSTER_COUNT_CRITERIA[0],
                            help="how --clusters auto scores K (default eigengap: largest gap of the kNN "
                                 "graph's Laplacian spectrum; silhouette: mean cosine silhouette of k-means)")
    else:
        parser.add_argument("--clusters", required=True, type=int, help="number of clusters K")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-record", action="store_true",
                        help="do not record the runs in the run store (python -m cae_core runs lists them)")


def _add_run_options(parser: argparse.ArgumentParser, auto: bool = False) -> None:
    _add_common_options(parser, auto)
    parser.add_argument("--seed", type=int, default=0)
    helps = {"epsilon": "Sinkhorn temperature (default 0.05)", "gamma": "fusion temperature (default 0.01)",
             "fusion": f"{' or '.join(FUSION_CHOICES)} (default adaptive: modality gap removed; "
                       "paper: the formula as written)",
             "combine": f"{' or '.join(COMBINES)} (default concat)",
             "n_centres": "semantic-space centres (default N/300, or 3K where N/300 < K)",
             "train_size": "size of the training split that N/300 counts (TAC's rule; default N)",
             "texts_per_centre": "texts each centre keeps (default 5)",
             "space": "tac (default) or hierarchy: MCA's hierarchy-aware filter on the WordNet nouns first"}
    for flag, field, kind in _METHOD_OPTIONS:
        choices = {"fusion": FUSION_CHOICES, "combine": COMBINES, "space": SPACE_CHOICES}.get(field)
        parser.add_argument(flag, dest=field, type=kind, default=None, choices=choices, help=helps[field])


def _list_of(kind):
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")
    return parse


def run_cluster(args: argparse.Namespace) -> int:
    from .analysis.export import write_run

    bundle = load_bundle(args.features)
    config, n_clusters = _config(args), args.clusters
    written = []
    if n_clusters == AUTO:
        # then the run is the one `--clusters K` would make (its semantic space sized for that K)
        n_clusters, written = _estimate_clusters(args, bundle, config)
    result = run_method(bundle, args.method, n_clusters, config=config, seed=args.seed,
                        progress=_progress_printer(args.quiet))
    for path in written + write_run(result, bundle, args.out):
        print(path)
    _record(args, {args.method: result}, bundle, "cluster")
    if result.metrics:
        print(json.dumps({key: round(value, 4) for key, value in result.metrics.items()}))
    return 0


def _estimate_clusters(args: argparse.Namespace, bundle, config: CaeConfig) -> tuple[int, list[Path]]:
    """``--clusters auto``: K estimated on the method's features and the files that show the criterion;
    the estimate (and the true count, where known) on stderr."""
    from .analysis.cluster_quality import true_cluster_count
    from .analysis.export import write_cluster_count

    estimate, n_centres = choose_n_clusters(bundle, args.method, args.k_range, criterion=args.k_criterion,
                                            config=config, seed=args.seed, progress=_progress_printer(args.quiet))
    true_k = true_cluster_count(bundle)
    known = "no labels to compare with" if true_k is None else \
        f"the labels have {true_k} classes: off by {estimate.best - true_k:+d}"
    print(f"estimated K = {estimate.best} ({estimate.criterion} over {estimate.ks[0]}..{estimate.ks[-1]}, "
          f"{estimate.n_rows:,} images, {n_centres} semantic-space centres); {known}", file=sys.stderr)
    return estimate.best, write_cluster_count(estimate, args.out, true_k)


def _record(args: argparse.Namespace, results: dict, bundle, source: str) -> None:
    """Record runs made together in the run store (unless ``--no-record``); their ids on stderr."""
    from .inputs.bundle import image_root_of
    from .runs import RunStore

    if args.no_record:
        return
    store = RunStore()
    try:
        ids = store.add_all(results, bundle, source=source, bundle_path=args.features,
                            image_root=image_root_of(bundle.metadata, args.features),
                            random_weights="model" in bundle.metadata and bundle.metadata.get("pretrained") is None)
    except (OSError, sqlite3.Error) as error:  # the run's files are written: a store that cannot be is a warning
        print(f"warning: the runs were not recorded in {store.root} ({error})", file=sys.stderr)
        return
    for method, run_id in ids.items():
        print(f"recorded run {run_id} ({method}) in {store.root}", file=sys.stderr)


def run_compare(args: argparse.Namespace) -> int:
    from .analysis.export import comparison_table, write_comparison

    bundle = load_bundle(args.features)
    results = run_methods(bundle, list(METHODS), args.clusters, config=_config(args), seed=args.seed,
                          progress=_progress_printer(args.quiet))
    for path in write_comparison(results, args.out):
        print(path)
    _record(args, results, bundle, "compare")
    print(comparison_table(results).to_string(index=False))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from .analysis.export import write_sweep
    from .analysis.sweep import summary_markdown, sweep

    grid = {field: getattr(args, field) for _, field, _ in _METHOD_OPTIONS if getattr(args, field)}
    bundle = load_bundle(args.features)
    table = sweep(bundle, args.clusters, grid, methods=args.methods, seeds=args.seeds,
                  base=CaeConfig(device=args.device), progress=_progress_printer(args.quiet),
                  on_results=None if args.no_record else lambda results: _record(args, results, bundle, "sweep"))
    for path in write_sweep(table, args.out):
        print(path)
    print(summary_markdown(table))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from .analysis.comparison import cluster_summary
    from .analysis.export import comparison_table
    from .inputs.demos import DEFAULT_DEMO, find_demos, load_demo

    if args.list:
        for demo in find_demos():
            print(f"{demo.name}: {demo.n_images:,} images, {demo.model}, {demo.n_nouns:,} nouns, "
                  f"{demo.n_captions:,} captions{'' if demo.has_pictures else ', no pictures'}"
                  f"{' (synthetic)' if demo.synthetic else ''}")
        return 0
    name = args.name or next((demo.name for demo in find_demos() if demo.name == DEFAULT_DEMO), "planted")
    bundle, _, demo = load_demo(name)
    n_clusters = args.clusters or (len(bundle.class_names) if bundle.class_names is not None else 10)
    print(f"demo {demo.name}: {demo.description}")
    if demo.synthetic:
        print("(planted embeddings: the texts are synthetic names, the scores show the mechanics only)")
    results = run_methods(bundle, list(METHODS), n_clusters, seed=args.seed, progress=_progress_printer(args.quiet))
    print(f"\nK = {n_clusters}, seed {args.seed}, defaults:")
    print(comparison_table(results).to_markdown(index=False, floatfmt=".3f"))
    summary = cluster_summary(results["cae"], bundle)
    columns = [column for column in ("cluster", "size", "majority class", "purity", "nouns") if column in summary]
    print("\ncae's clusters, named by the nouns its members sent the most transport mass to:")
    print(summary[columns].to_markdown(index=False, floatfmt=".2f"))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .benchmarks import run_benchmarks, scale_benchmark, scale_table

    if args.sizes and not args.scale:
        raise CaeError("--sizes is an option of bench --scale")
    if args.scale:
        report = scale_benchmark(args.sizes, quick=args.quick, verbose=not args.json)
        print(json.dumps(report) if args.json else scale_table(report))
        return 0
    print(json.dumps(run_benchmarks(quick=args.quick, verbose=not args.json)))
    return 0


# ---------------------------------------------------------------- encode, cache

class _TqdmProgress:
    """Maps ``progress(stage, fraction, message)`` to one tqdm bar per stage (on stderr)."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=1000, desc=stage, unit="‰", file=sys.stderr, leave=True)
        bar.update(int(fraction * 1000) - bar.n)
        bar.set_postfix_str(message, refresh=False)
        if fraction >= 1.0:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _add_encode_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("encode", help="encode images, nouns and captions into a features bundle")
    parser.add_argument("--images", required=True, help="folder, .zip, shared image set or benchmark (cifar10)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
                             + " (flags given explicitly override it)")
    parser.add_argument("--estimate", action="store_true",
                        help="print how long each preset would take on this device (a short measured run) and stop")
    parser.add_argument("--limit", type=int, default=None, help="at most N images (balanced over classes)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture")
    parser.add_argument("--pretrained", default="openai",
                        help=f"open_clip tag, checkpoint file, or '{RANDOM_WEIGHTS}' to explore the mechanics "
                             "(random weights: the features carry no semantics)")
    parser.add_argument("--nouns", default=None, help="wordnet (default), imagenet or a file with one noun per line")
    parser.add_argument("--captions", default=None, nargs="+", metavar="CAPTIONS",
                        help="flickr30k (default), flickr8k, a file or a folder; or 'per-image FILE': a CSV of "
                             "image_id,caption, each caption describing one image (SAC)")
    parser.add_argument("--max-captions", type=int, default=None, help="keep the first N captions (default all)")
    parser.add_argument("--templates", type=int, default=None,
                        help="how many of TAC's 7 noun prompt templates to average (default 7; 1 is 7x faster)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="images or texts per cache chunk, the unit of work torchrun workers share (default "
                             "1024 images, 8192 prompts' worth of texts; another value makes new cache entries)")
    parser.add_argument("--out", type=Path, help="output bundle (.npz); required unless --estimate")
    parser.set_defaults(handler=run_encode)
    return parser


def _apply_preset(args: argparse.Namespace) -> None:
    """Fill the options not given with the preset's values, or the defaults (the paper's banks)."""
    preset = PRESETS[args.preset or "paper"]
    for option in ("limit", "nouns", "templates", "captions", "max_captions"):
        if getattr(args, option) is None and (args.preset or option in ("nouns", "templates", "captions")):
            setattr(args, option, getattr(preset, option))
    args.per_image_captions = None
    if isinstance(args.captions, list):
        if args.captions[0] == "per-image":
            if len(args.captions) != 2:
                raise CaeError("--captions per-image takes one file: --captions per-image captions.csv")
            args.captions, args.per_image_captions = None, args.captions[1]
        elif len(args.captions) == 1:
            args.captions = args.captions[0]
        else:
            raise CaeError(f"--captions takes one source, or 'per-image FILE'; got {' '.join(args.captions)}")


def run_encode(args: argparse.Namespace) -> int:
    """Encode into ``--out``; under torchrun, as one of the workers (each encodes a share, rank 0 writes)."""
    from .inputs.distributed import leave, shard_from_env

    _apply_preset(args)
    if args.estimate:
        return _print_estimates(args)
    if args.out is None:
        raise CaeError("encode needs --out (the bundle to write), unless --estimate")
    shard = shard_from_env()
    writer = shard is None or shard.rank == 0
    pretrained = None if args.pretrained == RANDOM_WEIGHTS else args.pretrained
    if pretrained is None:
        print(f"warning: {args.model} with random weights; clusters and matched texts carry no semantics",
              file=sys.stderr)
    progress = _TqdmProgress() if writer else None  # one set of bars, not one per worker
    try:
        bundle, report = encode_dataset(args.images, args.model, pretrained, args.nouns, args.captions,
                                        args.device, args.batch_size, args.limit, args.templates,
                                        args.max_captions, progress, per_image_captions=args.per_image_captions,
                                        chunk_rows=args.chunk_rows, shard=shard)
    finally:
        if progress is not None:
            progress.close()
        if shard is not None:
            leave()
    if not writer:
        return 0
    print(save_bundle(bundle, args.out))
    print(report.summary())
    return 0


def run_caption(args: argparse.Namespace) -> int:
    from .inputs.captioning import generate_captions, write_captions

    pretrained = None if args.pretrained == RANDOM_WEIGHTS else args.pretrained
    if pretrained is None:
        print(f"warning: {args.model} with random weights writes meaningless captions", file=sys.stderr)
    source = open_image_source(args.images, limit=args.limit)
    clip = load_clip(args.model, pretrained, args.device)
    rows, skipped = generate_captions(clip, source, args.batch_size, args.max_tokens, _progress_printer(False))
    write_captions(rows, args.out)
    print(args.out)
    print(f"captioned {len(rows)} images; skipped {len(source.skipped) + len(skipped)} file(s)")
    return 0


def _print_estimates(args: argparse.Namespace) -> int:
    """Each preset's work and time on this device, measured with an untrained copy of ``--model``."""
    source = open_image_source(args.images)
    clip = load_clip(args.model, None, args.device)  # the architecture's speed does not depend on its weights
    for found in estimate_presets(clip, source):
        print(f"{found.preset}: {found.n_images:,} images, {found.n_noun_prompts:,} noun prompts, "
              f"{found.n_captions:,} captions: about {found.seconds / 60:,.1f} min on {clip.device.type} "
              f"({args.model}, measured here; nothing cached yet)")
    return 0


def _add_caption_parser(subparsers) -> argparse.ArgumentParser:
    from .inputs.captioning import DEFAULT_CAPTIONER

    parser = subparsers.add_parser("caption", help="write one caption per image with a CoCa model (SAC's "
                                                   "per-image captions, for encode --captions per-image FILE)")
    parser.add_argument("--images", required=True, help="folder, .zip, shared image set or benchmark")
    parser.add_argument("--limit", type=int, default=None, help="at most N images (balanced over classes)")
    parser.add_argument("--model", default=DEFAULT_CAPTIONER[0], help="an open_clip CoCa architecture")
    parser.add_argument("--pretrained", default=DEFAULT_CAPTIONER[1],
                        help=f"open_clip tag, checkpoint file, or '{RANDOM_WEIGHTS}' (meaningless captions)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=30, help="longest caption, in tokens")
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write (image_id,caption)")
    parser.set_defaults(handler=run_caption)
    return parser


def _add_cache_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("cache", help="list what is cached (embeddings, corpora)")
    parser.add_argument("--clear", action="store_true", help="delete every cache entry")
    parser.set_defaults(handler=run_cache)
    return parser


def run_cache(args: argparse.Namespace) -> int:
    if args.clear:
        print(f"freed {clear_cache() / 2**20:.1f} MiB in {cache_dir()}")
        return 0
    entries = list_entries()
    print(f"{cache_dir()}: {len(entries)} entries, {sum(e.size_bytes for e in entries) / 2**20:.1f} MiB")
    for entry in entries:
        state = "complete" if entry.complete else f"{entry.n_chunks_done}/{entry.n_chunks_total} chunks"
        print(f"{entry.namespace}/{entry.key[:12]}  {entry.size_bytes / 2**20:8.1f} MiB  {state:>12}  "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.modified))}  {entry.description}")
    return 0


# ---------------------------------------------------------------- runs

_LISTED = ["id", "created", "dataset", "method", "n_clusters", "seed", "acc", "nmi", "ari", "seconds", "source"]


def _settings_filter(text: str) -> tuple[str, object]:
    from .runs import parse_setting

    try:
        return parse_setting(text)
    except CaeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _table(frame) -> str:
    return frame.to_markdown(index=False, floatfmt=".4g") if len(frame) else "(none)"


def run_runs(args: argparse.Namespace) -> int:
    """``runs``: list the recorded runs, or show, compare, export, rerun or delete some."""
    from .runs import RunStore, add_umap, compare_runs, named_clusters, rerun, write_export

    store = RunStore()
    command = args.runs_command or "list"
    if command == "list":
        frame = store.runs(dataset=args.dataset, method=args.method, source=args.source,
                           settings=dict(args.setting or []), sort=args.sort,
                           descending=None if args.order is None else args.order == "desc", limit=args.limit)
        frame = frame.assign(created=frame["created"].str.slice(0, 19).str.replace("T", " "))
        print(_table(frame[_LISTED]))
        print(f"{len(frame)} run(s) in {store.root}", file=sys.stderr)
    elif command == "show":
        run = store.get(args.id)
        manifest = run.manifest
        print(f"run {run.id}: {run.method} on {run.dataset} ({manifest['bundle']['n_images']:,} images), "
              f"K = {manifest['n_clusters']}, seed {manifest['seed']}, made {manifest['created']} "
              f"by {manifest['source']}")
        print(f"bundle: {manifest['bundle']['path'] or manifest['bundle']['demo']} "
              f"(fingerprint {manifest['bundle']['fingerprint']})")
        print("metrics: " + (json.dumps({key: round(value, 4) for key, value in manifest["metrics"].items()})
                             if manifest["metrics"] else "none (no labels)") + f"; {manifest['seconds']:.2f} s")
        print("settings: " + json.dumps(manifest["settings"]))
        print("versions: " + json.dumps(manifest["versions"]))
        maps = run.maps()
        print("maps: " + (", ".join(maps) if maps else "none yet (runs export --map fused adds one)"))
        sizes = {entry["cluster"]: entry["size"] for entry in manifest["cluster_texts"]}
        for name in named_clusters(run):
            print(f"  cluster {name} ({sizes[int(name.split(' ')[0])]} images)")
    elif command == "compare":
        found = compare_runs(store.get(args.a), store.get(args.b))
        print(f"a = {found.a.id} ({found.a.method}), b = {found.b.id} ({found.b.method}); "
              f"ARI between their labelings: {found.ari:.4f}\n")
        print(_table(found.metrics))
        print("\nsettings that differ:\n" + _table(found.settings))
        print("\ncontingency (rows: a's clusters, columns: b's):\n" + found.contingency.to_string())
    elif command == "export":
        run = store.get(args.id)
        bundle = run.load_bundle()
        for representation in args.map or []:
            add_umap(store, run, representation, bundle)
        print(write_export(run, args.out, args.format, bundle))
    elif command == "rerun":
        run = store.get(args.id)
        again = rerun(run, device=args.device)
        verdict = "identical labels" if again.identical else \
            f"labels differ on {again.n_changed} of {len(again.result.assignments)} images (ARI {again.ari:.4f})"
        print(f"run {run.id} ({run.method}) made again: {verdict}")
        return 0 if again.identical else 1
    elif command == "delete":
        for run_id in args.ids:
            store.delete(run_id)
            print(f"deleted run {run_id}")
    for problem in store.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _add_runs_parser(subparsers) -> argparse.ArgumentParser:
    from .runs import EXPORT_FORMATS, SETTINGS, SORTABLE, SOURCES

    parser = subparsers.add_parser("runs", help="the recorded runs ($CAE_RUNS_DIR, else $CAE_CACHE_DIR/runs): "
                                                "list, show, compare, export, rerun, delete")
    parser.add_argument("--dataset", action="append", help="only runs on this data set (repeatable)")
    parser.add_argument("--method", action="append", help="only runs of this method (repeatable)")
    parser.add_argument("--source", choices=SOURCES, help="only runs made by this (app, cluster, compare, sweep)")
    parser.add_argument("--setting", action="append", type=_settings_filter, metavar="NAME=VALUE",
                        help="only runs with this setting, e.g. epsilon=0.05 or fusion=paper (repeatable)")
    parser.add_argument("--sort", choices=SORTABLE + SETTINGS, default="created", metavar="COLUMN",
                        help=f"sort by one of {', '.join(SORTABLE)} or a setting (epsilon, gamma, ...; "
                             "default created)")
    parser.add_argument("--order", choices=("asc", "desc"), default=None,
                        help="default: newest and best first, names in order")
    parser.add_argument("--limit", type=int, default=None, help="at most this many runs")
    parser.set_defaults(handler=run_runs)
    commands = parser.add_subparsers(dest="runs_command")
    commands.add_parser("list", help="list the runs (the default)")
    show = commands.add_parser("show", help="one run: data, settings, metrics, versions, clusters")
    show.add_argument("id", help="a run id, or a unique start of one")
    compare = commands.add_parser("compare", help="two runs of the same images: metrics, ARI, contingency table")
    compare.add_argument("a")
    compare.add_argument("b")
    export = commands.add_parser("export", help="one Parquet table, one row per image (Embedding Atlas, FiftyOne)")
    export.add_argument("id")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="parquet")
    export.add_argument("--out", required=True, type=Path, help="the file to write")
    export.add_argument("--map", action="append", choices=("image", "noun", "caption", "fused"),
                        help="first fit a UMAP of this representation and keep it with the run (umap_<name>_x/_y)")
    rerun = commands.add_parser("rerun", help="make a run again from its record; exit 1 when the labels differ")
    rerun.add_argument("id")
    rerun.add_argument("--device", default=None, help="auto, cpu or cuda (default: the run's)")
    delete = commands.add_parser("delete", help="remove runs")
    delete.add_argument("ids", nargs="+")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cae_core", description="CAE Explorer's engine: encode, "
                                     "caption, cluster, compare, sweep, demo, bench, cache, runs.")
    commands = parser.add_subparsers(dest="command", required=True)

    cluster = commands.add_parser("cluster", help="cluster a features bundle with one method")
    _add_run_options(cluster, auto=True)
    cluster.add_argument("--method", default="cae", choices=tuple(METHODS))
    cluster.set_defaults(handler=run_cluster)

    compare = commands.add_parser("compare", help="run every method on one bundle and tabulate")
    _add_run_options(compare)
    compare.set_defaults(handler=run_compare)

    sweep = commands.add_parser("sweep", help="methods x a grid of parameters x seeds on one bundle")
    _add_common_options(sweep)
    sweep.add_argument("--methods", type=_list_of(str), default=list(METHODS),
                       help="comma-separated methods (default: all)")
    sweep.add_argument("--seeds", type=_list_of(int), default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    for flag, field, kind in _METHOD_OPTIONS:
        sweep.add_argument(flag, dest=field, type=_list_of(kind), default=None,
                           help=f"comma-separated values of {field}")
    sweep.set_defaults(handler=run_sweep)

    demo = commands.add_parser("demo", help="run every method on a ready-made demo and print the table")
    demo.add_argument("--name", default=None, help="a demo (see --list); default stl10-vitb16 when present")
    demo.add_argument("--clusters", type=int, default=None, help="K (default: the demo's number of classes)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--list", action="store_true", help="list the demos found and stop")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(handler=run_demo)

    bench = commands.add_parser("bench", help="time each stage at a realistic size, against POT")
    bench.add_argument("--quick", action="store_true", help="smaller problem, a few seconds (with --scale: N, K, "
                       "centres and banks divided by 10)")
    bench.add_argument("--json", action="store_true", help="print only the JSON line")
    bench.add_argument("--scale", action="store_true",
                       help="the whole cae run at N = 10k, 50k, 200k (K = 1,000, 4,271 centres, full banks), "
                            "each N in a fresh process: seconds and peak memory per stage, and their growth")
    bench.add_argument("--sizes", type=_list_of(int), default=None, help="with --scale: comma-separated N to run")
    bench.set_defaults(handler=run_bench)

    _add_encode_parser(commands)
    _add_caption_parser(commands)
    _add_cache_parser(commands)
    _add_runs_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CaeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept in the cache and a rerun resumes from it", file=sys.stderr)
        return 130
