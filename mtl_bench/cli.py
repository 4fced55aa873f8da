"""The ``mtl-bench`` command: parses arguments, calls one function, prints. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtl_bench.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl-bench", description="Multi-task learning benchmark on e-commerce data.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one configuration on a suite")
    run.add_argument("--suite", required=True, help="suite name (see `mtl-bench tasks`)")
    run.add_argument("--profile", default="default", help="smoke (seconds, for tests) or default (the benchmark)")
    run.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    run.add_argument("--sharing", default=None, help="sharing strategy (default hard)")
    run.add_argument("--fusion", default=None, help="fusion strategy (default early)")
    run.add_argument("--weighting", default=None, help="loss weighting (default ew)")
    run.add_argument("--config", default=None, help="YAML file of config overrides, applied before --set")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=0.001")
    run.add_argument("--output-dir", default=None, help="where results.json and checkpoints go")
    run.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///./mlflow.db)")

    sub.add_parser("tasks", help="list suites, tasks and registered components")
    return parser


def _run(args: argparse.Namespace) -> None:
    from mtl_bench.config.load import build_config
    from mtl_bench.training.report import print_results
    from mtl_bench.training.run import run

    flags = {"seed": args.seed, "sharing.name": args.sharing, "fusion.name": args.fusion}
    flags["weighting.name"] = args.weighting
    cfg = build_config(args.suite, args.profile, flags=flags, sets=args.set, config_file=args.config)
    results = run(cfg, output_dir=args.output_dir, tracking_uri=args.tracking_uri)
    print_results(results)


def _tasks(args: argparse.Namespace) -> None:
    from mtl_bench.training.report import print_catalog

    print_catalog()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"run": _run, "tasks": _tasks}[args.command](args)
    except UserError as exc:
        print(f"mtl-bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
