"""How long ``mtl-bench`` takes to answer bad input (a typo in a name, a bad ``--set``): wall time of a fresh process.

A typo should be answered before torch, Lightning and MLflow are imported (issue 14, section 8): each command below
runs as a user runs it (``python -m mtl_bench ...`` in a new interpreter), in rotating rounds beside ``python -c
pass`` (the interpreter's own start-up), and each one's median over the rounds is reported, with its exit code and
whether its stderr was one line. Target: under 1 s on 2 cores. This script imports nothing heavy itself.

    python benchmarks/cli_latency.py --repeats 7
    PYTHONPATH=/tmp/before python benchmarks/cli_latency.py   # another checkout with the same venv
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# label -> arguments of `mtl-bench`; every bad-input command must exit 2 with one line on stderr
COMMANDS: dict[str, list[str]] = {
    "bad sharing name": ["run", "--suite", "ecommerce", "--sharing", "hardd"],
    "bad weighting name": ["compare", "--suite", "ecommerce", "--grid", "weighting=ew,eww"],
    "bad --set key": ["run", "--suite", "ecommerce", "--set", "train.batch_sise=4"],
    "bad --set value type": ["run", "--suite", "ecommerce", "--set", "train.epochs=many"],
    "unknown suite": ["run", "--suite", "ecomerce"],
    "unknown profile": ["pretrain", "--suite", "ecommerce", "--profile", "fast"],
    "tasks (lists names)": ["tasks"],
}
BASELINE = "python -c pass"


def _argv(label: str) -> list[str]:
    if label == BASELINE:
        return [sys.executable, "-c", "pass"]
    return [sys.executable, "-m", "mtl_bench", *COMMANDS[label]]


def run_once(label: str, cwd: Path) -> dict[str, Any]:
    """Wall seconds of one fresh process, its exit code and its stderr's line count."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    done = subprocess.run(_argv(label), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "returncode": done.returncode, "stderr": done.stderr.strip()}


def machine() -> str:
    """The CPU, its core count and the load average (how busy the shared machine was)."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load average n/a"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {load}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="rounds; each command's median is reported")
    p.add_argument("--only", action="append", default=None, metavar="LABEL", help="measure only these commands")
    p.add_argument("--cwd", default=None, help="folder the commands run in (default: a checkout's root)")
    args = p.parse_args(argv)
    labels = [BASELINE, *(args.only or COMMANDS)]
    cwd = Path(args.cwd) if args.cwd else Path(__file__).resolve().parents[1]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in range(args.repeats):  # rotating order: no command always runs right after a warm cache
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            runs[label].append(run_once(label, cwd))
    base = statistics.median(x["seconds"] for x in runs[BASELINE])
    rows = {}
    print(f"| command | median s | minus `{BASELINE}` | exit | stderr lines |")
    print("|---|---|---|---|---|")
    for label in labels:
        med = statistics.median(x["seconds"] for x in runs[label])
        last = runs[label][-1]
        lines = len(last["stderr"].splitlines())
        rows[label] = {"median_s": med, "over_python_s": med - base, "rounds_s": [x["seconds"] for x in runs[label]],
                       "returncode": last["returncode"], "stderr": last["stderr"]}
        shown = "" if label == BASELINE else " ".join(COMMANDS[label])
        print(f"| {label}{f' (`{shown}`)' if shown else ''} | {med:.2f} | {med - base:+.2f} | "
              f"{last['returncode']} | {lines} |")
    print(f"\n{args.repeats} rounds; {machine()}; mtl_bench from {_where(cwd)}")
    return {"rows": rows, "repeats": args.repeats}


def _where(cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", "import mtl_bench; print(mtl_bench.__file__)"], cwd=cwd,
                          capture_output=True, text=True)
    return str(Path(done.stdout.strip()).parent.parent) if done.returncode == 0 else "?"


if __name__ == "__main__":
    main()
