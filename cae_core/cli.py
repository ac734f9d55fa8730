"""``python -m cae_core``: encode, caption, cluster, compare, sweep, theorem1, demo, bench, cache, runs.

Every request that cannot be met (a bad option, a missing or unwritable file) ends with one line on stderr
and exit code 2, never a traceback; an unexpected failure ends with one line and exit code 1, and its
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import functools
import errno
import json
import sqlite3
import sys
import time
import traceback
from pathlib import Path

from .analysis.sweep import LABELS, METRICS, REFERENCE
from .errors import CaeError
from .progress import no_progress
from .files import check_writable
from .inputs.bundle import load_bundle, save_bundle
from .inputs.cache import cache_dir, clear_cache, list_entries
from .inputs.encode import RANDOM_WEIGHTS, encode_dataset, pretrained_option
from .inputs.corpora import TAC_TEMPLATES
from .inputs.demos import DEFAULT_DEMO
from .inputs.encoders import IMAGE_CHUNK_ROWS, TEXT_CHUNK_PROMPTS, load_clip
from .inputs.presets import PRESETS, estimate_presets
from .inputs.sources import open_image_source
from .method.cluster_count import CLUSTER_COUNT_CRITERIA, DEFAULT_RANGE, choose_n_clusters
from .method.fusion import COMBINES
from .method.semantic_space import CENTRES_PER_IMAGE, SMALL_SET_CENTRES_PER_CLUSTER
from .method.methods import DEFAULT_CLUSTERS, FUSION_CHOICES, METHODS, SELECTION_CHOICES, SPACE_CHOICES, CaeConfig
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
def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


_METHOD_OPTIONS = (("--epsilon", "epsilon", float), ("--gamma", "gamma", float), ("--fusion", "fusion", str),
                   ("--centre", "centre", _on_off), ("--combine", "combine", str),
                   ("--neighbours", "neighbours", int), ("--centres", "n_centres", int),
                   ("--train-size", "train_size", int), ("--texts-per-centre", "texts_per_centre", int),
                   ("--space", "space", str), ("--selection", "selection", str))


def _config(args: argparse.Namespace) -> CaeConfig:
    given = {field: getattr(args, field) for _, field, _ in _METHOD_OPTIONS if getattr(args, field) is not None}
    return CaeConfig(device=args.device, space_from=args.space_from, **given)


def _cluster_count(text: str, word: str = AUTO) -> int | str:
    if text == word:
        return word
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of clusters or {word!r}, got {text!r}") from None


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
    _add_output_options(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--space-from", dest="space_from", default=None, metavar="BUNDLE",
                        help="make the semantic space (its k-means and text selection) from this bundle's images, "
                             "e.g. the training split's (same encoder and text banks); default: the clustered images")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-record", action="store_true",
                        help="do not record the runs in the run store (python -m cae_core runs lists them)")


def _add_run_options(parser: argparse.ArgumentParser, auto: bool = False) -> None:
    _add_common_options(parser, auto)
    parser.add_argument("--seed", type=int, default=0)
    defaults, per_centre = CaeConfig(), round(1 / CENTRES_PER_IMAGE)
    helps = {"epsilon": f"Sinkhorn temperature (default {defaults.epsilon:g})",
             "gamma": f"temperature of --fusion paper's softmax (default {defaults.gamma:g})",
             "fusion": f"fusion weights, {' or '.join(FUSION_CHOICES)} (default {defaults.fusion}: each text view "
                       "weighed by its neighbourhood agreement with the image; paper: the formula as written)",
             "centre": f"on or off: remove each modality's mean before fusing (default {'on' if defaults.centre else 'off'})",
             "combine": f"{' or '.join(COMBINES)} (default {defaults.combine})",
             "neighbours": f"k of the neighbourhoods the agreement weighting compares (default {defaults.neighbours})",
             "selection": f"{' or '.join(SELECTION_CHOICES)} (default {defaults.selection}: TAC's rule; nearest: "
                          "the CAE seed's top-K per centre)",
             "n_centres": f"semantic-space centres (default N/{per_centre}, or {SMALL_SET_CENTRES_PER_CLUSTER}K "
                          f"where N/{per_centre} < K)",
             "train_size": f"size of the training split that N/{per_centre} counts (TAC's rule; default N)",
             "texts_per_centre": f"texts each centre keeps (default {defaults.texts_per_centre})",
             "space": f"{' or '.join(SPACE_CHOICES)} (default {defaults.space}); hierarchy: MCA's hierarchy-aware "
                      "filter on the WordNet nouns first"}
    for flag, field, kind in _METHOD_OPTIONS:
        choices = {"fusion": FUSION_CHOICES, "combine": COMBINES, "space": SPACE_CHOICES,
                   "selection": SELECTION_CHOICES}.get(field)
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

    check_writable(args.out, folder=True)
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


def _record(args: argparse.Namespace, results: dict, bundle, source: str, path: Path | None = None) -> None:
    """Record runs made together on the bundle read from ``path`` (default ``--features``) in the run store
    (unless ``--no-record``); their ids on stderr."""
    from .inputs.bundle import has_random_weights, image_root_of
    from .runs import RunStore

    if args.no_record:
        return
    store = RunStore()
    try:
        path = path or args.features
        ids = store.add_all(results, bundle, source=source, bundle_path=path,
                            image_root=image_root_of(bundle.metadata, path),
                            random_weights=has_random_weights(bundle.metadata))
    except (OSError, sqlite3.Error) as error:  # the run's files are written: a store that cannot be is a warning
        print(f"warning: the runs were not recorded in {store.root} ({error})", file=sys.stderr)
        return
    for method, run_id in ids.items():
        print(f"recorded run {run_id} ({method}) in {store.root}", file=sys.stderr)


def run_compare(args: argparse.Namespace) -> int:
    from .analysis.export import comparison_table, write_comparison

    check_writable(args.out, folder=True)
    bundle = load_bundle(args.features)
    results = run_methods(bundle, None, args.clusters, config=_config(args), seed=args.seed,
                          progress=_progress_printer(args.quiet))
    for path in write_comparison(results, args.out):
        print(path)
    _record(args, results, bundle, "compare")
    print(comparison_table(results).to_string(index=False))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from .analysis.export import write_sweep
    from .analysis.sweep import check_grid, check_runs, common_methods, compare_sweep, load_bundles, reference_method, \
        sweep_bundles, sweep_markdown

    grid = check_grid({field: getattr(args, field) for _, field, _ in _METHOD_OPTIONS if getattr(args, field)})
    check_writable(args.out, folder=True)
    bundles = load_bundles(args.features)
    methods = args.methods or common_methods(bundles)
    check_runs(methods, args.seeds)
    reference = reference_method(methods, args.reference)
    paths = {path.stem: path for path in args.features}
    table = sweep_bundles(bundles, args.clusters, grid, methods=methods, seeds=args.seeds,
                          base=CaeConfig(device=args.device, space_from=args.space_from),
                          progress=_progress_printer(args.quiet),
                          on_results=lambda name, results: _record(args, results, bundles[name], "sweep",
                                                                   paths[name]))
    comparison = compare_sweep(table, args.metric, reference)
    for path in write_sweep(table, args.out, comparison):
        print(path)
    print(sweep_markdown(table, comparison))
    return 0


def run_theorem1(args: argparse.Namespace) -> int:
    import pandas as pd

    from .analysis.concentration import EPSILONS, TOP, theorem1_check, theorem1_classes, theorem1_markdown
    from .files import atomic_write_text

    bundles = {path.stem: load_bundle(path) for path in args.features}
    for name, bundle in bundles.items():  # every bundle checked before the first one's minutes of work
        theorem1_classes(bundle, name)
    report = None if args.quiet else (lambda message: print(f"[theorem1] {message}", file=sys.stderr))
    tables = [theorem1_check(bundle, name, args.epsilon or EPSILONS, args.seed, args.device, progress=report)
              for name, bundle in bundles.items()]
    table = pd.concat(tables, ignore_index=True)
    markdown = theorem1_markdown(table, TOP)
    for path in (atomic_write_text(args.out / "theorem1.csv", table.to_csv(index=False)),
                 atomic_write_text(args.out / "theorem1.md", markdown + "\n")):
        print(path)
    print(markdown)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from .analysis.comparison import cluster_summary
    from .analysis.export import comparison_table
    from .analysis.cluster_quality import true_cluster_count
    from .inputs.demo_sources import fetch_demo
    from .inputs.demos import default_demo, fetchable_demos, find_demos, load_demo

    if args.fetch:
        here = next((demo for demo in find_demos() if demo.name == args.fetch and demo.path is not None), None)
        if here is not None:
            print(f"{here.path} (already here: nothing to fetch)")
            return 0
        progress = None if args.quiet else _TqdmProgress()
        try:
            path = fetch_demo(args.fetch, progress=progress or no_progress)
        finally:
            if progress is not None:
                progress.close()
        print(path)
        print(f"open it with: python -m cae_core demo --name {args.fetch}, or on the app's Home")
        return 0
    if args.list:
        demos = find_demos()
        for demo in demos:
            print(f"{demo.name}: {demo.n_images:,} images, {demo.model}, {demo.n_nouns:,} nouns, "
                  f"{demo.n_captions:,} captions{'' if demo.has_pictures else ', no pictures'}"
                  f"{' (synthetic)' if demo.synthetic else ''}")
        for source in fetchable_demos(demos):
            print(f"{source.name}: not here; --fetch {source.name} builds it from its public sources "
                  f"({source.size / 2**20:.1f} MiB to download): {source.description}")
        return 0
    bundle, _, demo = load_demo(args.name or default_demo())
    n_clusters = args.clusters if args.clusters is not None else true_cluster_count(bundle) or DEFAULT_CLUSTERS
    print(f"demo {demo.name}: {demo.description}")
    if demo.synthetic:
        print("(planted embeddings: the texts are synthetic names, the scores show the mechanics only)")
    results = run_methods(bundle, None, n_clusters, seed=args.seed, progress=_progress_printer(args.quiet))
    print(f"\nK = {n_clusters}, seed {args.seed}, defaults:")
    print(comparison_table(results).to_markdown(index=False, floatfmt=".3f"))
    summary = cluster_summary(results["cae"], bundle)
    columns = [column for column in ("cluster", "size", "majority class", "purity", "nouns") if column in summary]
    print("\ncae's clusters, named by the nouns its members sent the most transport mass to:")
    print(summary[columns].to_markdown(index=False, floatfmt=".2f"))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .benchmarks import run_benchmarks, scale_benchmark, scale_table

    if (args.sizes or args.space_size is not None) and not args.scale:
        raise CaeError("--sizes and --space-size are options of bench --scale")
    if args.space_size is not None and args.space_size < 0:
        raise CaeError(f"--space-size must be 0 (none) or a number of training images, got {args.space_size}")
    if args.scale:
        report = scale_benchmark(args.sizes, quick=args.quick, verbose=not args.json, space_train_size=args.space_size)
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
    paper = PRESETS["paper"]  # what encode uses without a preset
    parser.add_argument("--nouns", default=None,
                        help=f"wordnet or imagenet (default {paper.nouns}), or a file with one noun per line")
    parser.add_argument("--captions", default=None, nargs="+", metavar="CAPTIONS",
                        help=f"flickr30k or flickr8k (default {paper.captions}), a file or a folder; or "
                             "'per-image FILE': a CSV of "
                             "image_id,caption, each caption describing one image (SAC)")
    parser.add_argument("--max-captions", type=int, default=None, help="keep the first N captions (default all)")
    parser.add_argument("--templates", type=int, default=None,
                        help=f"how many of TAC's {len(TAC_TEMPLATES)} noun prompt templates to average (default "
                             f"{paper.templates}; 1 is {len(TAC_TEMPLATES)}x faster)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="images or texts per cache chunk, the unit of work torchrun workers share (default "
                             f"{IMAGE_CHUNK_ROWS} images, {TEXT_CHUNK_PROMPTS} prompts' worth of texts; another value "
                             "makes new cache entries)")
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
    check_writable(args.out, folder=False)
    shard = shard_from_env()
    writer = shard is None or shard.rank == 0
    pretrained = pretrained_option(args.pretrained)
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
    from .inputs.captioning import check_caption_options, generate_captions, write_captions

    check_caption_options(args.batch_size, args.max_tokens)  # before the model's minutes of loading
    check_writable(args.out, folder=False)
    pretrained = pretrained_option(args.pretrained)
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
                                     "caption, cluster, compare, sweep, theorem1, demo, bench, cache, runs.")
    commands = parser.add_subparsers(dest="command", required=True)

    cluster = commands.add_parser("cluster", help="cluster a features bundle with one method")
    _add_run_options(cluster, auto=True)
    cluster.add_argument("--method", default="cae", choices=tuple(METHODS))
    cluster.set_defaults(handler=run_cluster)

    compare = commands.add_parser("compare", help="run every method on one bundle and tabulate")
    _add_run_options(compare)
    compare.set_defaults(handler=run_compare)

    sweep = commands.add_parser("sweep", help="methods x a grid of parameters x seeds on one bundle or many, "
                                "compared across them")
    sweep.add_argument("--features", required=True, type=Path, nargs="+", help="features bundles (.npz), named by "
                       "their file's stem; all are loaded before anything runs")
    sweep.add_argument("--clusters", required=True, type=functools.partial(_cluster_count, word=LABELS),
                       help=f"number of clusters K, or {LABELS!r}: each bundle's number of labelled classes")
    _add_output_options(sweep)
    sweep.add_argument("--methods", type=_list_of(str), default=None,
                       help="comma-separated methods (default: every one all the bundles allow)")
    sweep.add_argument("--reference", default=None, help=f"the method the others are paired with (default "
                       f"{REFERENCE} where swept, else the first method)")
    sweep.add_argument("--metric", choices=METRICS, default="acc",
                       help="the metric of the paired differences and ranks (default acc)")
    sweep.add_argument("--seeds", type=_list_of(int), default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    for flag, field, kind in _METHOD_OPTIONS:
        sweep.add_argument(flag, dest=field, type=_list_of(kind), default=None,
                           help=f"comma-separated values of {field}")
    sweep.set_defaults(handler=run_sweep)

    theorem1 = commands.add_parser("theorem1", help="Theorem 1 on real features: OT against softmax at one "
                                   "temperature, mass on nouns outside each image's class lineage, row concentration")
    theorem1.add_argument("--features", required=True, type=Path, nargs="+", help="labelled features bundles (.npz)")
    theorem1.add_argument("--out", required=True, type=Path, help="output folder (theorem1.csv, theorem1.md)")
    theorem1.add_argument("--epsilon", type=_list_of(float), default=None,
                          help="comma-separated temperatures (default 0.1,0.05,0.02,0.01,0.005)")
    theorem1.add_argument("--seed", type=int, default=0, help="the semantic space's seed (default 0)")
    theorem1.add_argument("--device", default="auto", help="auto, cpu or cuda")
    theorem1.add_argument("--quiet", action="store_true")
    theorem1.set_defaults(handler=run_theorem1)

    demo = commands.add_parser("demo", help="run every method on a ready-made demo and print the table")
    demo.add_argument("--name", default=None, help=f"a demo (see --list); default {DEFAULT_DEMO} when present")
    demo.add_argument("--clusters", type=int, default=None, help="K (default: the demo's number of classes)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--list", action="store_true", help="list the demos found (and those --fetch can build) and stop")
    demo.add_argument("--fetch", metavar="NAME", default=None,
                      help="build the demo NAME from its public sources (downloads checked against recorded "
                           "SHA-256, kept in CAE_CACHE_DIR) and stop")
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
    bench.add_argument("--space-size", type=int, default=None,
                       help="with --scale: training images the semantic space is made from (--space-from's path) "
                            "for 50,000 clustered images; default ImageNet-1K's 1,281,167 (--quick: a tenth), 0: none")
    bench.set_defaults(handler=run_bench)

    _add_encode_parser(commands)
    _add_caption_parser(commands)
    _add_cache_parser(commands)
    _add_runs_parser(commands)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    for command in commands.choices.values():  # also after the command; SUPPRESS keeps a --debug given before
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="print the traceback of an unexpected error")
    return parser


# what to do about a failed file operation, by its errno
_OS_ADVICE = {errno.ENOENT: "check the path", errno.ENOTDIR: "check the path",
              errno.EACCES: "check its permissions or choose another path",
              errno.EPERM: "check its permissions or choose another path",
              errno.EROFS: "choose a location that is not read-only",
              errno.ENOSPC: "free some disk space or write elsewhere (--out, CAE_CACHE_DIR)",
              errno.EDQUOT: "free some disk space or write elsewhere (--out, CAE_CACHE_DIR)"}


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: the file, the reason, and what to do."""
    where = str(error.filename) if error.filename is not None else "a file"
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    reason = error.strerror or str(error) or type(error).__name__
    return f"{where}: {reason}; {_OS_ADVICE.get(error.errno, 'check the path and its permissions')}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; finished work is kept in the cache and a rerun resumes from it", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the promise above: one line, the traceback only on request
        if args.debug:
            traceback.print_exc()
        if isinstance(error, CaeError):
            message, code = str(error), 2
        elif isinstance(error, OSError):
            message, code = os_error_message(error), 2
        else:
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            message, code = f"unexpected {type(error).__name__}: {first_line}" + \
                ("" if args.debug else "; rerun with --debug for the traceback, and report it"), 1
        print(f"error: {message}", file=sys.stderr)
        return code
