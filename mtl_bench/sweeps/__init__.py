"""Optuna sweeps: the sweep file format (``spec``), its loading and checks (``load``), the search space (``space``),
the study storage (``storage``), one worker's loop (``runner``), one trial (``trial``), objective values
(``objectives``), stop signals (``stops``) and the report (``report``)."""
