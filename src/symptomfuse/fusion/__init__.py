"""Fusion modules: each takes a dict of per-modality embeddings and a mask of which are present."""
