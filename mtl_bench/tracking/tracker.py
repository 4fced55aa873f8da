"""MLflow tracking through an explicit ``MlflowClient`` (no global active run, so parallel runs never mix).

Default store: a sqlite file (``sqlite:///<cwd>/mlflow.db``) with artifacts beside it, no server needed;
``--tracking-uri http://host:5000`` (or $MLFLOW_TRACKING_URI) points a team at a server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

EXPERIMENT_PREFIX = "mtl-bench"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and tuples stay values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise opening a sqlite store across processes: the first access creates and migrates its tables, and two
    runs started together on a new file (two at a time on 2 cores) otherwise both migrate it and one fails
    (alembic "expected to match one row"). A server store needs no lock."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    db = Path(tracking_uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock"):
        yield


def _artifact_root(tracking_uri: str) -> str | None:
    """For a sqlite store, artifacts go to ``mlartifacts/`` beside the database file (not into the cwd)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


class Tracker:
    """One MLflow run: params, metrics, artifacts, status."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> None:
        """A new run, or (``run_id`` given and still in the store) that run reopened as RUNNING."""
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        with _store_lock(tracking_uri):  # also makes "find or create the experiment" one step
            self.client = MlflowClient(tracking_uri)
            self.run_id = self._open(experiment, run_name, tags, run_id)

    def _open(self, experiment: str, run_name: str, tags: dict[str, str] | None, run_id: str | None) -> str:
        from mlflow.exceptions import MlflowException

        if run_id is not None:
            try:
                if self.client.get_run(run_id).info.lifecycle_stage == "active":
                    self.client.update_run(run_id, status="RUNNING")
                    return run_id
            except MlflowException:
                pass  # deleted or from another store: start a new run
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            root = _artifact_root(self.tracking_uri)
            experiment_id = self.client.create_experiment(
                experiment, artifact_location=f"{root}/{experiment}" if root else None
            )
        else:
            experiment_id = found.experiment_id
        return self.client.create_run(experiment_id, run_name=run_name, tags=tags or {}).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(flatten(params).items())]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_safe(k), float(v), now, step or 0) for k, v in sorted(metrics.items())]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


class NullTracker:
    """The tracker of DDP ranks other than 0: only rank 0 creates and writes the MLflow run."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def _safe(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


class EpochMetricsLogger(Logger):
    """Lightning logger that forwards every logged value to our Tracker, with the epoch as MLflow step.

    ``tracker`` may be set after the Trainer is built: under DDP only then is it known which process is rank 0.
    """

    def __init__(self, tracker: Tracker | NullTracker | None) -> None:
        super().__init__()
        self.tracker = tracker

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return (self.tracker.run_id if self.tracker is not None else None) or ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is logged by the run itself, once."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        epoch = metrics.get("epoch")
        values = {k: v for k, v in metrics.items() if k != "epoch"}
        if values and self.tracker is not None:
            self.tracker.log_metrics(values, step=int(epoch) if epoch is not None else step)
