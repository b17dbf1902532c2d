"""A content-addressed feature cache.

An entry's key is the SHA-256 of the recording's file contents and of every setting that shapes its
features, so a re-run with nothing changed finds every entry and decodes nothing, and any change to a
file or a setting makes a new key. Entries are NumPy ``.npz`` archives read with ``allow_pickle=False``
plus a JSON sidecar; both are written atomically. A recording that failed is cached too (JSON only), so
its failure is not re-discovered by decoding it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from symptomfuse.atomic import atomic_path, atomic_write_text


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(content: list[str], settings: dict) -> str:
    payload = json.dumps({"content": content, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class FeatureCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _base(self, key: str) -> Path:
        return self.root / key[:2] / key

    def meta(self, key: str) -> dict | None:
        """The entry's JSON record, or None if there is no entry."""
        p = self._base(key).with_suffix(".json")
        if not p.exists():
            return None
        try:
            meta = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("status") == "ok" and not self._base(key).with_suffix(".npz").exists():
            return None
        return meta

    def load(self, key: str) -> dict[str, np.ndarray]:
        with np.load(self._base(key).with_suffix(".npz"), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def put(self, key: str, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Store an entry; the arrays land before the JSON, so a JSON record implies its arrays."""
        base = self._base(key)
        if arrays is not None:
            with atomic_path(base.with_suffix(".npz")) as tmp:
                np.savez(tmp, **arrays)
        atomic_write_text(base.with_suffix(".json"), json.dumps(meta, indent=1))
