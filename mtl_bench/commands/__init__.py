"""The commands the CLI runs, apart from the machinery they drive: ``run`` (``run.py``, its phases in
``phases.py``), ``compare``, ``pretrain``, ``distill``, and the terminal output (``printing.py``).

Commands import the rooms below them (data, models, training, evaluation, results, tracking); nothing below
imports a command (``tests/test_layout.py``). The sweep runner (``sweeps/``) and the leaderboard (``leaderboard/``)
are commands' rooms of their own and may call ``run``.
"""
