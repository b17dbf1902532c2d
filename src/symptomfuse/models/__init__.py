"""Per-modality encoders, rebuilt by name from a plain config (see ``registry``)."""
