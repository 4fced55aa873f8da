"""Accepting submissions: verify outside the lock, then under a file lock check for duplicates, write the entry
atomically to ``<root>/NAME/submissions/<submission>.json`` and regenerate ``<root>/NAME/README.md``.

Verification (the slow part) runs concurrently; only the duplicate check and the writes are serialised, so
concurrent submits of different entries all land and two copies of one entry land once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pandas as pd

import mtl_bench
from mtl_bench.errors import UserError
from mtl_bench.leaderboard.definition import LeaderboardSpec, load_leaderboard
from mtl_bench.leaderboard.render import board_frame, markdown, with_paired
from mtl_bench.leaderboard.submission import Accepted, Submission, digest, read_submission
from mtl_bench.leaderboard.verify import verify
from mtl_bench.results.io import write_json_atomic, write_text_atomic

LOCK_TIMEOUT_S = 600


class Outcome(NamedTuple):
    entry: Submission
    path: Path
    rank: float  # NaN when the leaderboard's aggregate is undefined for the entry
    total: int


def submissions_dir(spec: LeaderboardSpec) -> Path:
    return spec.folder / "submissions"


def accepted_entries(spec: LeaderboardSpec) -> list[Submission]:
    """Every stored submission, by name; a stored file that does not parse is an error naming it."""
    folder = submissions_dir(spec)
    return [read_submission(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def submit(file: str | Path, leaderboard: str, name: str | None = None) -> Outcome:
    from filelock import FileLock

    spec = load_leaderboard(leaderboard)
    if spec.archived:
        raise UserError(f"leaderboard {spec.name} is archived (suite {spec.suite} v{spec.suite_version}) and takes no "
                        "new submissions")
    submission = read_submission(Path(file))
    if name is not None:
        submission = Submission.model_validate(submission.model_dump() | {"name": name})
    verify(submission, spec, str(file))
    entry_digest = digest(submission)
    folder = submissions_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / ".lock", timeout=LOCK_TIMEOUT_S):
        entries = accepted_entries(spec)
        for other in entries:
            if other.name == submission.name:
                raise UserError(f"{file}: field 'name' = {submission.name!r}: leaderboard {spec.name} already has a "
                                "submission of that name (choose another with --name)")
            if other.accepted is not None and other.accepted.digest == entry_digest:
                raise UserError(f"{file}: duplicate: the same predictions were accepted before as {other.name!r}")
        accepted = Accepted(date=datetime.now(UTC).isoformat(timespec="seconds"), digest=entry_digest,
                            verified_by=mtl_bench.__version__)
        entry = Submission.model_validate(submission.model_dump() | {"accepted": accepted.model_dump()})
        path = write_json_atomic(folder / f"{entry.name}.json", entry.model_dump(mode="json"), compact=True)
        entries = sorted([*entries, entry], key=lambda e: e.name)
        frame = board_frame(spec, entries)
        write_text_atomic(spec.folder / "README.md", markdown(spec, frame))
    rank = float(frame.loc[frame["name"] == entry.name, "rank"].iloc[0])
    return Outcome(entry, path, rank, len(entries))


def show(leaderboard: str, baseline: str | None = None, replicates: int | None = None
         ) -> tuple[LeaderboardSpec, pd.DataFrame]:
    """The leaderboard and its ranked frame with each entry's paired test against ``baseline`` (default: the
    leaderboard's baseline entry); ``render.render`` or ``render.rich_table`` display it."""
    spec = load_leaderboard(leaderboard)
    entries = accepted_entries(spec)
    return spec, with_paired(spec, entries, board_frame(spec, entries), baseline, replicates)
