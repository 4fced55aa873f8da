"""The ``files`` data source: a task on your own CSV, JSONL or parquet file (or a ``datasets`` id), YAML only.

``load.py`` registers the source, validates its options, plans the columns and manages the cache (its docstring
shows the YAML); ``build.py`` reads and cleans the rows; ``video.py`` decodes the clips the rows point at.
"""
