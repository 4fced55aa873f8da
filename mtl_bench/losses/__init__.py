"""Loss functions shared by task types and training: contrastive alignment (``contrastive.py``) and the
knowledge-distillation terms with the settings of a distilled run (``distillation.py``)."""
