"""The ``mtl-bench`` command: parses arguments, builds and checks the config (``config/`` only, before any heavy
import), calls one command, prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_bench.errors import UserError
from mtl_bench.training.failures import RunFailed


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``compare``."""
    parser.add_argument("--profile", default="default", help="smoke (seconds, for tests) or default (the benchmark)")
    parser.add_argument("--config", default=None, help="YAML file of config overrides, applied before --set")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=0.001")
    parser.add_argument("--output-dir", default=None, help="where results go (run: results.json and checkpoints)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///./mlflow.db)")
    parser.add_argument("--baselines", default=None, help="single-task baseline store (default runs/baselines)")
    parser.add_argument("--submit", action="store_true", help="also write a leaderboard submission file (results "
                        "and test predictions of every seed): run: DIR/submission.json, compare: "
                        "DIR/submissions/<cell>.json")


def _run_arguments(sub: Any) -> None:
    run = sub.add_parser("run", help="train and evaluate one configuration on a suite")
    run.add_argument("--suite", required=True, help="suite name (see `mtl-bench tasks`)")
    run.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    run.add_argument("--sharing", default=None, help="sharing strategy (default hard)")
    run.add_argument("--fusion", default=None, help="fusion strategy (default early)")
    run.add_argument("--weighting", default=None, help="loss weighting (default ew)")
    run.add_argument("--init-from", default=None, metavar="CKPT", help="start the encoders from a `mtl-bench "
                     "pretrain` checkpoint (sets model.init_from)")
    run.add_argument("--devices", type=lambda v: int(v) if v.isdigit() else v, default=None,
                     help="devices per node (sets train.devices; default 1)")
    run.add_argument("--strategy", default=None, help="auto or ddp: one process per device (sets train.strategy)")
    run.add_argument("--num-nodes", type=int, default=None, help="machines of a DDP run (sets train.num_nodes)")
    run.add_argument("--resume", action="store_true", help="continue the run in the output dir from its last "
                     "epoch checkpoint, in the same MLflow run")
    _add_common(run)


def _compare_arguments(sub: Any) -> None:
    cmp = sub.add_parser("compare", help="run a grid of configurations over seeds and tabulate them")
    cmp.add_argument("--suite", required=True, help="suite name (see `mtl-bench tasks`)")
    cmp.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                     help="values to compare, e.g. --grid sharing=single-task,hard --grid fusion=early,late")
    cmp.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per cell (default 3)")
    _paired_arguments(cmp, "CELL", "cell of the grid, as compare.md names it (default: the single-task cell)")
    cmp.add_argument("--pairs", default="baseline", choices=["baseline", "all"], help="test every cell against the "
                     "baseline (default), or every pair of cells")
    cmp.add_argument("--detect", action="append", default=[], metavar="X | TASK=X", help="power: how many seeds "
                     "would detect a difference X of every task's main score (or of TASK's, or delta_p=X in %%); "
                     "repeatable")
    _add_common(cmp)


def _paired_arguments(parser: argparse.ArgumentParser, metavar: str, what: str) -> None:
    """Options of the paired comparisons, shared by ``compare`` and ``leaderboard show``."""
    parser.add_argument("--baseline", default=None, metavar=metavar, help=f"compare against this {what}")
    parser.add_argument("--replicates", type=int, default=None, help="bootstrap replicates of the paired tests "
                        "(default 1000 for mean metrics, 500 for corpus metrics such as CIDEr-D and mAP)")


def _pretrain_arguments(sub: Any) -> None:
    pre = sub.add_parser("pretrain", help="contrastive pre-training of a suite's encoders on its image-text pairs")
    pre.add_argument("--suite", required=True, help="suite name (see `mtl-bench tasks`)")
    pre.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    pre.add_argument("--profile", default="default", help="smoke or default: data sizes, model and epochs")
    pre.add_argument("--config", default=None, help="YAML file of config overrides, applied before --set")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=30")
    pre.add_argument("--output-dir", default=None, help="where pretrained.pt and pretrain.json go "
                     "(default runs/<suite>/pretrain/seed<N>)")
    pre.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///./mlflow.db)")


def _distill_arguments(sub: Any) -> None:
    dst = sub.add_parser("distill", help="distil a trained run (the teacher) into a smaller student, and compare")
    dst.add_argument("--teacher", required=True, metavar="RUN_DIR", help="a finished `mtl-bench run` output folder")
    dst.add_argument("--student", default="small", help="student size: small (dim 64) or tiny (dim 32); default small")
    dst.add_argument("--profile", default=None, help="training settings of the students (default: the teacher's)")
    dst.add_argument("--temperature", type=float, default=2.0, help="softmax / sigmoid temperature T (default 2)")
    dst.add_argument("--alpha", type=float, default=0.5, help="weight of the distillation term; 1 - alpha weighs "
                     "the ground truth (default 0.5)")
    dst.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="student override, e.g. "
                     "model.dim=48 (data.* stays the teacher's)")
    dst.add_argument("--output-dir", default=None, help="default: distill-<student> beside the teacher's folder")
    dst.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///./mlflow.db)")


def _sweep_arguments(sub: Any) -> None:
    swp = sub.add_parser("sweep", help="run an Optuna sweep (FILE), or report on a study (report STUDY)",
                         usage="mtl-bench sweep FILE [options] | mtl-bench sweep report STUDY [--storage URL] "
                               "[--output-dir DIR]")
    swp.add_argument("file", metavar="FILE | report", help="a sweep file (sweeps/*.yaml), or the word report")
    swp.add_argument("study", metavar="STUDY", nargs="?", help="with report: the study's name")
    swp.add_argument("--n-trials", type=int, default=None, help="finished trials the study should reach (default: "
                     "the file's n_trials); a total over all workers")
    swp.add_argument("--storage", default=None, help="Optuna storage URL shared by all workers, e.g. "
                     "postgresql://user:pw@host/db (default: a sqlite file in the output dir)")
    swp.add_argument("--study-name", default=None, help="study name (default: the file's study)")
    swp.add_argument("--profile", default=None, help="smoke or default (default: the file's profile)")
    swp.add_argument("--output-dir", default=None, help="trial folders, default storage and report "
                     "(default runs/sweeps/<study>)")
    swp.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for a new study (default "
                     "sqlite:///./mlflow.db); later workers use the study's")
    swp.add_argument("--heartbeat", type=int, default=30, help="seconds between a running trial's heartbeats; a "
                     "trial silent for 3 heartbeats is failed and retried (default 30)")


def _leaderboard_arguments(sub: Any) -> None:
    board = sub.add_parser("leaderboard", help="submit to a leaderboard (submit FILE) or show one (show NAME)",
                           usage="mtl-bench leaderboard submit FILE --leaderboard NAME [--name NAME] | "
                                 "mtl-bench leaderboard show NAME [--format table|md|html|csv] [--output FILE]")
    board_sub = board.add_subparsers(dest="action", required=True)
    submit = board_sub.add_parser("submit", help="verify a submission file and add it to a leaderboard")
    submit.add_argument("file", help="a submission file (written by run/compare --submit)")
    submit.add_argument("--leaderboard", required=True, help="leaderboard name (leaderboards/NAME.yaml)")
    submit.add_argument("--name", default=None, help="the entry's name (default: the file's)")
    show = board_sub.add_parser("show", help="the ranked table of a leaderboard")
    show.add_argument("leaderboard", help="leaderboard name (leaderboards/NAME.yaml)")
    show.add_argument("--format", default="table", choices=["table", "md", "html", "csv"], help="default table")
    show.add_argument("--output", default=None, help="write to FILE instead of printing")
    _paired_arguments(show, "NAME", "entry in paired tests (default: the leaderboard's baseline entry)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl-bench", description="Multi-task learning benchmark on e-commerce data.")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_arguments(sub)
    _compare_arguments(sub)
    _pretrain_arguments(sub)
    _distill_arguments(sub)
    _sweep_arguments(sub)
    _leaderboard_arguments(sub)
    sub.add_parser("tasks", help="list suites, tasks and registered components")
    return parser


# Every command that trains first builds and checks its config (suite, profile, names, --set keys and value types,
# --config file) with config/ modules alone, and only then imports commands/ (torch, Lightning, MLflow): a typo is
# answered at once (benchmarks/cli_latency.py), not after seconds of imports.


def _run(args: argparse.Namespace) -> None:
    from mtl_bench.config.check import check_names
    from mtl_bench.config.load import build_config

    flags = {"seed": args.seed, "sharing.name": args.sharing, "fusion.name": args.fusion}
    flags["weighting.name"] = args.weighting
    flags |= {"train.devices": args.devices, "train.strategy": args.strategy, "train.num_nodes": args.num_nodes}
    flags["model.init_from"] = args.init_from and str(Path(args.init_from).expanduser().resolve())
    cfg = build_config(args.suite, args.profile, flags=flags, sets=args.set, config_file=args.config)
    check_names(cfg)
    from mtl_bench.commands.printing import print_results
    from mtl_bench.commands.run import run

    results = run(cfg, output_dir=args.output_dir, tracking_uri=args.tracking_uri, baselines_dir=args.baselines,
                  resume=args.resume)
    if not results:  # a DDP process other than rank 0: rank 0 prints and writes
        return
    print_results(results)
    if args.submit:
        from mtl_bench.commands.run import default_output_dir
        from mtl_bench.leaderboard.submission import make_submission, write_submission

        out = Path(args.output_dir) if args.output_dir else default_output_dir(cfg)
        print(f"submission: {write_submission(out / 'submission.json', make_submission([out]))}")


def _pretrain(args: argparse.Namespace) -> None:
    from mtl_bench.config.check import check_names
    from mtl_bench.config.load import build_config

    cfg = build_config(args.suite, args.profile, flags={"seed": args.seed}, sets=args.set, config_file=args.config)
    check_names(cfg)
    from mtl_bench.commands.pretrain import pretrain

    out = args.output_dir or Path("runs") / cfg.suite / "pretrain" / f"seed{cfg.seed}"
    summary = pretrain(cfg, out, tracking_uri=args.tracking_uri)
    last = summary["history"][-1]
    scores = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.endswith("t2i_r1"))
    print(f"pre-trained {cfg.suite} in {summary['train_seconds']:.0f} s; validation text->image Recall@1: {scores}")
    print(f"checkpoint: {summary['checkpoint']}  (fine-tune: mtl-bench run --suite {cfg.suite} --init-from "
          f"{summary['checkpoint']})")


def _distill(args: argparse.Namespace) -> None:
    from mtl_bench.config.student import check_distill

    check_distill(Path(args.teacher), args.student, args.profile, args.set, args.temperature, args.alpha)
    from mtl_bench.commands.distill import distill, markdown

    summary = distill(args.teacher, student=args.student, profile=args.profile, sets=args.set,
                      output_dir=args.output_dir, temperature=args.temperature, alpha=args.alpha,
                      tracking_uri=args.tracking_uri)
    print(markdown(summary), end="")
    print(f"report: {summary['output_dir']}/distill.md, distill.json")


def _compare(args: argparse.Namespace) -> None:
    from mtl_bench.config.check import check_names
    from mtl_bench.config.grid import parse_grid, plan

    for _, cfg in plan(args.suite, parse_grid(args.grid), args.seeds, args.profile, args.set, args.config):
        check_names(cfg)
    detect = _detect(args.detect, args.suite)
    _check_replicates(args.replicates)
    from mtl_bench.commands.compare import compare
    from mtl_bench.commands.printing import print_compare
    from mtl_bench.results.comparisons import Statistics

    statistics = Statistics(args.baseline, args.pairs, args.replicates, detect)
    frame, written = compare(
        args.suite, args.grid, seeds=args.seeds, profile=args.profile, sets=args.set, config_file=args.config,
        output_dir=args.output_dir, tracking_uri=args.tracking_uri, baselines_dir=args.baselines, submit=args.submit,
        statistics=statistics,
    )
    print_compare(frame, written)


def _detect(values: list[str], suite: str) -> dict[str, float]:
    """--detect X (every task) / TASK=X / delta_p=X as {task or "*": X}; a bad value is a one-line error."""
    from mtl_bench.tasks.catalog import get_suite

    tasks = [*get_suite(suite).tasks, "delta_p"]
    out = {}
    for value in values:
        key, _, number = value.rpartition("=")
        if key and key not in tasks:
            raise UserError(f"--detect {value}: {key!r} is not a task of suite {suite} (expected one of "
                            f"{', '.join(tasks)})")
        try:
            out[key or "*"] = abs(float(number))
        except ValueError:
            raise UserError(f"--detect {value}: expected a number X or TASK=X, e.g. --detect 0.01") from None
        if not 0 < out[key or "*"] < float("inf"):
            raise UserError(f"--detect {value}: expected a positive finite difference")
    return out


def _check_replicates(replicates: int | None) -> None:
    if replicates is not None and replicates < 2:
        raise UserError(f"--replicates {replicates}: expected at least 2 bootstrap replicates")


def _sweep(args: argparse.Namespace) -> None:
    if args.file == "report":
        from mtl_bench.sweeps.report import report

        if args.study is None:
            raise UserError("sweep report: expected a study name: mtl-bench sweep report STUDY")
        given = [f"--{k.replace('_', '-')}" for k in ("n_trials", "study_name", "profile", "tracking_uri")
                 if getattr(args, k) is not None]
        if given:
            raise UserError(f"sweep report: {', '.join(given)} is for running a sweep, not for its report")
        for path in report(args.study, storage=args.storage, output_dir=args.output_dir):
            print(path)
        return
    if args.study is not None:
        raise UserError(f"sweep {args.file} {args.study}: expected one sweep FILE, or: report STUDY")
    from mtl_bench.sweeps.runner import sweep

    try:
        summary = sweep(args.file, n_trials=args.n_trials, storage=args.storage, study_name=args.study_name,
                        profile=args.profile, output_dir=args.output_dir, tracking_uri=args.tracking_uri,
                        heartbeat=args.heartbeat)
    except KeyboardInterrupt:
        print("mtl-bench: sweep stopped; run the same command again to continue the study", file=sys.stderr)
        raise SystemExit(130) from None
    print(f"study {summary.study}: {summary.finished}/{summary.n_trials} trials finished "
          f"({len(summary.ran)} by this worker). {summary.best}")
    print(f"report: mtl-bench sweep report {summary.study} --output-dir {summary.output_dir}"
          + (f" --storage {summary.storage}" if summary.storage_given else ""))


def _leaderboard(args: argparse.Namespace) -> None:
    from mtl_bench.leaderboard import store
    from mtl_bench.leaderboard.render import render, rich_table

    if args.action == "submit":
        outcome = store.submit(args.file, args.leaderboard, name=args.name)
        rank = "unranked" if outcome.rank != outcome.rank else f"rank {outcome.rank:.0f} of {outcome.total}"
        print(f"accepted {outcome.entry.name!r} on leaderboard {args.leaderboard}: {rank}; stored as {outcome.path}")
        return
    _check_replicates(args.replicates)
    spec, frame = store.show(args.leaderboard, baseline=args.baseline, replicates=args.replicates)
    if args.format == "table" and args.output is None:
        from rich.console import Console

        Console(width=max(Console().width, 200)).print(rich_table(spec, frame))  # wide rather than squashed
        return
    text = render(spec, frame, args.format)
    if args.output is None:
        print(text, end="")
    else:
        from mtl_bench.results.io import write_text_atomic

        print(write_text_atomic(args.output, text))


def _tasks(args: argparse.Namespace) -> None:
    from mtl_bench.commands.printing import print_catalog

    print_catalog()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mtl_bench.training.signals import Stopped  # light: signal and shlex only

    try:
        commands = {"run": _run, "pretrain": _pretrain, "distill": _distill, "compare": _compare, "sweep": _sweep,
                    "leaderboard": _leaderboard, "tasks": _tasks}
        commands[args.command](args)
    except UserError as exc:
        print(f"mtl-bench: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:  # training started and failed: NaN loss, out of GPU memory (training/failures.py)
        print(f"mtl-bench: error: {exc}", file=sys.stderr)
        return 1
    except Stopped as stop:  # SIGTERM / SIGINT: one line, exit 128 + the signal number (training/signals.py)
        if stop.rank_zero:  # under DDP rank 0 speaks for every process
            print(stop.line(sys.argv[1:] if argv is None else list(argv)), file=sys.stderr)
        return stop.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
