"""Optuna sweeps: the sweep file format (``spec``), its loading and checks (``load``), the search space (``space``)."""
