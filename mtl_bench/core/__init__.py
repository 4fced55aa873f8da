"""The ground floor: what the model's rooms (encoders, fusion, sharing, heads, weighting, tasks) share.

``types`` (Tokens, Fused, modality names), ``layers`` (attention blocks and masks), ``backbone`` (the Backbone
module that sharing strategies copy), ``options`` (rejecting unknown component options) and ``distributed`` (DDP
averaging helpers). Modules here import only each other, ``errors`` and torch: never a room above them, so any room
can import them without an import circle (``tests/test_layout.py``).
"""
