"""The ``fashion`` data source: Fashion Product Images as four subsets of real products (see ``load.py``).

``load.py`` registers the source, resolves its options, opens the table and manages the cache; ``build.py`` turns
rows into subsets with the help of ``rows.py`` (CSV, titles, split, rare classes) and ``images.py`` (pixels, clips).
"""
