"""``python -m cae_core``: encode, cluster, compare, bench, cache.

Every request that cannot be met ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .bundle import load_bundle
from .errors import CaeError
from .pipeline import METHODS, CaeConfig, run_method, run_methods


def _progress_printer(quiet: bool):
    if quiet:
        return None
    last = {}

    def report(stage: str, fraction: float, message: str) -> None:
        if fraction in (0.0, 1.0) and last.get(stage) != fraction:
            last[stage] = fraction
            print(f"[{stage}] {message}", file=sys.stderr)
    return report


def _config(args: argparse.Namespace) -> CaeConfig:
    return CaeConfig(device=args.device, fusion_mode=args.fusion, n_centres=args.centres)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, type=Path, help="features bundle (.npz)")
    parser.add_argument("--clusters", required=True, type=int, help="number of clusters K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--fusion", default="concat", choices=("concat", "sum"))
    parser.add_argument("--centres", type=int, default=None, help="semantic-space centres (default max(K, N/300))")
    parser.add_argument("--quiet", action="store_true")


def run_cluster(args: argparse.Namespace) -> int:
    from .export import write_run

    bundle = load_bundle(args.features)
    result = run_method(bundle, args.method, args.clusters, config=_config(args), seed=args.seed,
                        progress=_progress_printer(args.quiet))
    for path in write_run(result, bundle, args.out):
        print(path)
    if result.metrics:
        print(json.dumps({key: round(value, 4) for key, value in result.metrics.items()}))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .export import comparison_table, write_comparison

    bundle = load_bundle(args.features)
    results = run_methods(bundle, list(METHODS), args.clusters, config=_config(args), seed=args.seed,
                          progress=_progress_printer(args.quiet))
    for path in write_comparison(results, args.out):
        print(path)
    print(comparison_table(results).to_string(index=False))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmarks

    print(json.dumps(run_benchmarks(quick=args.quick, verbose=not args.json)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .encode import add_cache_parser, add_encode_parser

    parser = argparse.ArgumentParser(prog="python -m cae_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    cluster = commands.add_parser("cluster", help="cluster a features bundle with one method")
    _add_run_options(cluster)
    cluster.add_argument("--method", default="cae", choices=tuple(METHODS))
    cluster.set_defaults(handler=run_cluster)

    compare = commands.add_parser("compare", help="run every method on one bundle and tabulate")
    _add_run_options(compare)
    compare.set_defaults(handler=run_compare)

    bench = commands.add_parser("bench", help="time each stage at a realistic size, against POT")
    bench.add_argument("--quick", action="store_true", help="smaller problem, a few seconds")
    bench.add_argument("--json", action="store_true", help="print only the JSON line")
    bench.set_defaults(handler=run_bench)

    add_encode_parser(commands)
    add_cache_parser(commands)
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
