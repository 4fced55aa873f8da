"""Options checking shared by every registered component (fusions, sharings): typos fail instead of being ignored."""

from __future__ import annotations

from collections.abc import Mapping

from mtl_bench.errors import UserError


def reject_options(kind: str, opts: Mapping[str, object]) -> None:
    """Fail loudly on options a component does not take (a typo in ``options:`` would otherwise be ignored)."""
    if opts:
        raise UserError(f"{kind} got unknown options {sorted(opts)}")
