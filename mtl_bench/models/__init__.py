"""The model's assembly: ``backbone.py`` picks each modality's encoder through the ``ENCODERS`` registry and adds
the fusion; ``build.py`` turns a RunConfig into a ``MultiTaskModel`` (``multitask.py``: the sharing strategy and
one head per task); ``init_from.py`` loads pre-trained encoder weights. The parts they assemble live in
``encoders/``, ``fusion/``, ``sharing/`` and ``heads/``, on the ground floor ``core/``."""
