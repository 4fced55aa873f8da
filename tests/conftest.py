"""Shared fixtures: one data cache and one MLflow store per test session, in temporary folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What tox used to set: subprocesses hash strings the same way every time, and MLflow sends no telemetry.
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")


@pytest.fixture(scope="session", autouse=True)
def baselines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Single-task runs file their baselines here, not into the checkout's runs/ (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("baselines")
    os.environ["MTL_BENCH_BASELINES"] = str(path)
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mtl-bench ARGS`` in a fresh interpreter, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mtl_bench", *args], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True,
        timeout=600,
    )
