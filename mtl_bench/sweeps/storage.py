"""Where a study lives: an Optuna RDB storage (a sqlite file by default, PostgreSQL for many workers).

Every worker opens the storage with heartbeats: a RUNNING trial whose worker stopped beating for ``GRACE``
heartbeat intervals (killed, machine lost) is marked FAIL by the next worker that looks, and its parameters are
enqueued again (``RetryHeartbeatStaleTrialCallback``), so no point of the search is silently dropped. Heartbeats
work on sqlite too.

Connection problems (bad URL, server down, missing driver) become one UserError line; a password in the URL is
never printed.
"""

from __future__ import annotations

import importlib.util
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean

GRACE = 3  # heartbeat intervals without a beat before a RUNNING trial counts as dead
MAX_RETRY = 3  # how often the parameters of a dead trial are tried again
STUDY_DB = "study.db"  # the default sqlite storage, inside the sweep's output folder
SCHEMA_ATTEMPTS = 5  # workers starting together on a new storage race to create its tables; the losers retry


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def shown(url: str) -> str:
    """The URL with any password masked, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _driver_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL SQLAlchemy should use, and engine options.

    ``postgresql://`` means psycopg2 to SQLAlchemy; we ship psycopg 3, so a bare ``postgresql://`` uses it when
    psycopg2 is absent. sqlite waits up to 60 s for a lock (two workers writing at once) instead of failing.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"--storage {url}: not a database URL; expected e.g. sqlite:///study.db or "
                        "postgresql://user:password@host/database") from None
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        return parsed.render_as_string(hide_password=False), {"connect_args": {"connect_timeout": 10}}
    if parsed.drivername.startswith("sqlite"):
        return url, {"connect_args": {"timeout": 60}}
    return url, {}


def open_storage(
    url: str,
    heartbeat: int | None = None,
    on_dead_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.RDBStorage:
    """The storage at ``url``; with ``heartbeat`` (seconds), dead RUNNING trials are failed and retried.

    ``on_dead_trial`` runs after the retry is enqueued (the runner marks the trial's MLflow runs KILLED).
    """
    target, engine_kwargs = _driver_url(url)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def dead(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retry(study, trial)
        if on_dead_trial is not None:
            on_dead_trial(study, trial)

    beats: dict[str, Any] = {}
    if heartbeat is not None:
        beats = dict(heartbeat_interval=heartbeat, grace_period=GRACE * heartbeat, heartbeat_stale_trial_callback=dead)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(target, engine_kwargs=engine_kwargs, **beats)
        except ModuleNotFoundError as exc:
            raise UserError(f"--storage {shown(url)}: the database driver {exc.name!r} is not installed; for "
                            "PostgreSQL: pip install 'mtl-bench[postgres]'") from None
        except Exception as exc:  # sqlalchemy's OperationalError and ArgumentError, optuna's StorageInternalError
            reason = str(getattr(exc, "orig", None) or exc).strip()
            if attempt + 1 < SCHEMA_ATTEMPTS and any(s in reason for s in ("already exists", "duplicate key",
                                                                              "UNIQUE constraint")):
                time.sleep(random.uniform(0.2, 1.0))  # two workers created the tables of a new storage at once
                continue
            line = reason.splitlines()[0] if reason else repr(exc)
            raise UserError(f"--storage {shown(url)}: cannot open the study storage: {line}") from None
    raise AssertionError("unreachable")


def load_study(name: str, storage: optuna.storages.BaseStorage, url: str, **kwargs: Any) -> optuna.Study:
    """The existing study ``name``, or a UserError listing the studies that do exist there."""
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        names = [s.study_name for s in storage.get_all_studies()]
        hint = did_you_mean(name, names) if names else "the storage holds no study yet"
        raise UserError(f"no study {name!r} in {shown(url)}: {hint}") from None
