"""Task types (code). Task instances are YAML files under the top-level ``tasks/`` folder (see catalog.py)."""

from mtl_bench.registry import Registry

TASK_TYPES: Registry = Registry("task type")

from mtl_bench.tasks import captioning, classification, retrieval, tagging  # noqa: E402,F401  (registers the types)
