"""Loss-weighting strategies: how per-task losses become one update. Independent of the sharing strategy.

The built-in names are declared here with the module that registers each one: one module per loss-based method
(file name = name), and ``jacobian.py`` for the TorchJD aggregators (its ``AGGREGATORS`` keys). A module, and torch
with it, is imported only on ``WEIGHTINGS.get``; a module that registers a name not declared here fails on import.
"""

from mtl_bench.registry import Registry

_OWN_MODULE = ("dbmtl", "dwa", "ew", "famo", "fixed", "gradnorm", "rlw", "uw")
_JACOBIAN = ("alignedmtl", "cagrad", "config", "dualproj", "fairgrad", "graddrop", "gradvac", "imtlg", "mgda",
             "nashmtl", "pcgrad", "upgrad")

WEIGHTINGS: Registry = Registry("weighting", builtins={
    **{name: f"mtl_bench.weighting.{name}" for name in _OWN_MODULE},
    **dict.fromkeys(_JACOBIAN, "mtl_bench.weighting.jacobian"),
})
