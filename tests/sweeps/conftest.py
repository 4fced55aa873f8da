"""A throwaway PostgreSQL server for the sweep tests, and tiny sweep files.

The server is started from the Debian package's binaries (``.ci/run`` installs them when missing): initdb into a
temporary folder, pg_ctl on a free port with its socket in that folder, trust authentication, no fsync, stopped
and deleted at the end of the session. PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
system user (created by the package), or ``nobody``. When the server cannot start, the tests that need it fail
in CI (``$CI`` set) and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


def _binaries() -> tuple[str, str] | None:
    """(initdb, pg_ctl): on PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian keeps them there)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return found[-1], str(Path(found[-1]).with_name("pg_ctl"))
    return None


def _as_user() -> list[str]:
    """The command prefix that drops root (initdb and postgres refuse to run as root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL server could not be started: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (in CI this is a failure: .ci/run installs PostgreSQL)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:<port>/sweeps`` on a server that lives for the test session."""
    binaries = _binaries()
    if binaries is None:
        _unavailable("initdb/pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin")
    initdb, pg_ctl = binaries  # type: ignore[misc]
    try:
        prefix = _as_user()
    except RuntimeError as exc:
        _unavailable(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="mtl-bench-pg-"))  # not under pytest's 0700 root-owned tmp
    if prefix:
        shutil.chown(folder, user=prefix[2])
    data, port = folder / "data", _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    commands = [
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        [*prefix, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o", options, "start"],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            _unavailable(f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout)[-1000:]}")
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def write_sweep(folder: Path, data_dir: Path, study: str, n_trials: int, objectives: int = 1, **fields) -> Path:
    """A tiny sweep file: smoke profile, one epoch of two batches, a 2 x 2 categorical space."""
    spec = {
        "study": study,
        "suite": "ecommerce",
        "profile": "smoke",
        "n_trials": n_trials,
        "space": {
            "sharing.name": {"type": "categorical", "choices": ["hard", "mmoe"]},
            "fusion.name": {"type": "categorical", "choices": ["early", "late"]},
        },
        "objectives": [{"metric": "mean_main_score", "direction": "maximize"},
                       {"metric": "params", "direction": "minimize"}][:objectives],
        "set": ["train.epochs=1", "train.limit_train_batches=2", "train.progress=false", "train.num_threads=1",
                f"data.dir={data_dir}"],
        **fields,
    }
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
