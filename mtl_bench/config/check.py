"""The checks of a resolved config that need no heavy import: the suite exists and every strategy name is registered.

The CLI runs them right after building the config, before torch, Lightning or MLflow are imported, so a typo is
answered in well under a second; ``training.run.validate`` repeats them (cheaply) for callers of the Python API.
Strategy options are checked later, by the strategy's class (they need it).
"""

from __future__ import annotations

from mtl_bench.config.schema import RunConfig


def check_names(cfg: RunConfig) -> None:
    """A UserError ("did you mean") for an unknown suite, sharing, fusion or weighting, in that order."""
    from mtl_bench.fusion import FUSIONS
    from mtl_bench.sharing import SHARINGS
    from mtl_bench.tasks.catalog import check_suite_name
    from mtl_bench.weighting import WEIGHTINGS

    check_suite_name(cfg.suite)
    SHARINGS.check(cfg.sharing.name)
    FUSIONS.check(cfg.fusion.name)
    WEIGHTINGS.check(cfg.weighting.name)
