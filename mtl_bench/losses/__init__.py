"""Loss functions shared by task types and training commands: contrastive alignment. (The per-task distillation
terms are in tasks/distill.py.)"""
