"""benchmarks/cli_latency.py runs and reports what it measured (no timing thresholds: the machines are shared)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_cli_latency_reports_each_command_against_the_interpreter(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cli_latency = importlib.import_module("cli_latency")
    out = cli_latency.main(["--repeats", "2", "--only", "unknown suite", "--only", "bad --set key"])
    rows = out["rows"]
    assert list(rows) == [cli_latency.BASELINE, "unknown suite", "bad --set key"]
    for row in rows.values():
        assert len(row["rounds_s"]) == 2 and all(math.isfinite(s) and s > 0 for s in row["rounds_s"])
        assert math.isclose(row["over_python_s"], row["median_s"] - rows[cli_latency.BASELINE]["median_s"])
    assert rows["unknown suite"]["returncode"] == 2
    assert rows["unknown suite"]["stderr"] == "mtl-bench: error: unknown suite 'ecomerce': did you mean 'ecommerce'?"
    assert rows["bad --set key"]["returncode"] == 2
    printed = capsys.readouterr().out
    assert "| unknown suite (`run --suite ecomerce`) |" in printed and "2 rounds;" in printed
    sys.modules.pop("cli_latency", None)
