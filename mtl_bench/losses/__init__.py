"""Loss functions shared by task types and training commands (contrastive alignment, distillation)."""
