"""An archived board (a suite version that moved on) still shows its entries and takes no new ones."""

from __future__ import annotations

import pytest

from mtl_bench.errors import UserError
from mtl_bench.leaderboard import store
from mtl_bench.leaderboard.definition import leaderboards_root
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def checkout_boards(monkeypatch):
    monkeypatch.setenv("MTL_BENCH_LEADERBOARDS", str(ROOT / "leaderboards"))


def test_archived_board_shows_its_entries():
    spec, frame = store.show("ecommerce-v1")
    assert spec.archived and spec.suite_version == 1
    assert list(frame.sort_values("rank")["name"]) == ["mmoe-early-ew", "soft-early-ew", "single-task-early-ew",
                                                        "hard-early-ew"]


def test_archived_board_rejects_submissions():
    entry = leaderboards_root() / "ecommerce-v1" / "submissions" / "hard-early-ew.json"
    with pytest.raises(UserError, match="leaderboard ecommerce-v1 is archived .* takes no new submissions"):
        store.submit(entry, "ecommerce-v1", name="again")
