"""A suite's data: ``sources/`` loads each task's dataset (registered sources: the generated shop, the fashion
catalogue, local files), ``prepare.py`` tokenises and encodes it into ``TaskData`` per split (``batches.py``), and
``datamodule.py`` serves the batches to Lightning. ``text.py`` holds the tokenizer and caption normalisation."""
