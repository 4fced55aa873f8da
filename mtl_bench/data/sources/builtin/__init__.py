"""The ``builtin`` data source: the generated shop (``shop.py``, drawn by ``render.py``), cached by ``cache.py`` and
registered by ``load.py``."""
