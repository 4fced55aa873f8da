"""Evaluation outside the Trainer: test-split predictions and their file (``predictions.py``), FLOPs per sample
and robustness to a missing modality (``measures.py``). Used by ``run``, ``distill`` and the leaderboard."""
