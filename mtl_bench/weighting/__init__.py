"""Loss-weighting strategies: how per-task losses become one update. Independent of the sharing strategy."""

from mtl_bench.registry import Registry

WEIGHTINGS: Registry = Registry("weighting")

from mtl_bench.weighting import dbmtl, dwa, ew, famo, gradnorm, jacobian, rlw, uw  # noqa: E402,F401  (registers them)
