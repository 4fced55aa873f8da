"""Task types (code). Task instances are YAML files under the top-level ``tasks/`` folder (see catalog.py).

The built-in types are declared here with their modules; a module (torch, torchmetrics) is imported on
``TASK_TYPES.get``, so finding a suite or task file needs no heavy import.
"""

from mtl_bench.registry import Registry

TASK_TYPES: Registry = Registry("task type", builtins={
    name: f"mtl_bench.tasks.{name}" for name in ("captioning", "classification", "retrieval", "tagging")
})
