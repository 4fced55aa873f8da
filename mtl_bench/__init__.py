"""mtl-bench: a benchmark suite for multi-task learning on multimodal e-commerce data."""

__version__ = "0.1.0"
