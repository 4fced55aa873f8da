"""The training machinery the commands drive: ``system.py`` (the Lightning module: one step over a batch of every
task, validation, checkpoint selection), ``trainer.py`` (the Trainer and its settings), ``resume.py`` and
``checkpoint_io.py`` (epoch checkpoints, ``--resume``), ``signals.py`` (SIGTERM / SIGINT), ``distributed.py``
(DDP), ``disk.py`` (checks before training), ``failures.py`` (NaN, out of memory), ``provenance.py`` and
``pretrainer.py`` (contrastive pre-training). Nothing here imports a command (``mtl_bench/commands/``)."""
