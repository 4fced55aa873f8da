"""What a run's numbers become: ``schema.py`` (results.json, versioned), ``io.py`` (atomic writes),
``baselines.py`` (the single-task baseline store, Δp/Δm), ``scores.py`` and ``table.py`` (compare tables)."""
