"""Checkpointable state of TorchJD's stateful aggregators (GradVac's EMA targets, Nash-MTL's warm start).

TorchJD keeps that state in plain attributes and in buffers that start as None, which ``load_state_dict`` cannot
fill, so it is read and written here attribute by attribute. The encoding holds only tensors, numbers, strings and
containers of them, so checkpoints still load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

# Every piece of state a TorchJD aggregator in our table keeps between calls (torchjd 0.x):
# GradVacWeighting: _phi_t, _state_key; _NashMTLWeighting: step, prvs_alpha, normalization_factor, init_gtg.
STATE_KEYS = ("_phi_t", "_state_key", "step", "prvs_alpha", "normalization_factor", "init_gtg")


def _encode(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"tensor": value.detach().clone()}
    if isinstance(value, np.ndarray):
        return {"ndarray": torch.from_numpy(value.copy())}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], torch.dtype):  # GradVac's (m, dtype)
        return {"shape_dtype": [value[0], str(value[1]).removeprefix("torch.")]}
    return {"plain": value}  # None, int, float


def _decode(encoded: dict[str, Any]) -> Any:
    if "tensor" in encoded:
        return encoded["tensor"]
    if "ndarray" in encoded:
        return encoded["ndarray"].numpy()
    if "shape_dtype" in encoded:
        size, dtype = encoded["shape_dtype"]
        return size, getattr(torch, dtype)
    return encoded["plain"]


def aggregator_state(aggregator: nn.Module) -> dict[str, dict[str, Any]]:
    """{module path: {attribute: encoded value}} for every stateful attribute in the aggregator's modules."""
    state: dict[str, dict[str, Any]] = {}
    for path, module in aggregator.named_modules():
        found = {k: _encode(getattr(module, k)) for k in STATE_KEYS if k in vars(module) or k in module._buffers}
        if found:
            state[path] = found
    return state


def load_aggregator_state(aggregator: nn.Module, state: dict[str, dict[str, Any]]) -> None:
    """Put back what ``aggregator_state`` read; Nash-MTL past its first step also rebuilds its cvxpy problem."""
    modules = dict(aggregator.named_modules())
    for path, values in state.items():
        module = modules[path]
        for key, encoded in values.items():
            setattr(module, key, _decode(encoded))
        if getattr(module, "step", 0) and hasattr(module, "_init_optim_problem"):
            module._init_optim_problem()  # built at step 0 in an uninterrupted run; every value is reset per solve
