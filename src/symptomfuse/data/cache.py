"""A content-addressed feature cache.

An entry's key is the SHA-256 of the recording's file contents and of every setting that shapes its
features, so a re-run with nothing changed finds every entry and decodes nothing, and any change to a
file or a setting makes a new key. An entry is a folder of ``.npy`` files, one per array, plus a JSON
sidecar. The arrays are written a run of rows at a time into a staging folder that is renamed into place
when complete, and the JSON comes last, so a JSON record implies its arrays. Arrays are read back as
``ondisk.DiskArray`` (header checked, object arrays refused: nothing is unpickled), a slice at a time.
A recording that failed is cached too (JSON only), so its failure is not re-discovered by decoding it
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from symptomfuse.atomic import atomic_write_text
from symptomfuse.data.ondisk import DiskArray, NpyWriter, read_npy, write_npy

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


def _owner() -> str:
    """``host.pid`` of this process, in the names of its scratch and staging folders (for ``sweep``)."""
    return f"{socket.gethostname().replace('.', '-')}.{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class CacheEntry:
    """One entry being written: whole arrays (``put``) and arrays that arrive a run of rows at a time
    (``append``), in a staging folder; ``commit`` moves it into place and writes the JSON record last."""

    def __init__(self, cache: "FeatureCache", key: str):
        self.cache, self.key = cache, key
        final = cache.folder(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.{_owner()}.", dir=final.parent))
        self._writers: dict[str, NpyWriter] = {}

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"cached array name {name!r}: use letters, digits, '_', '.' or '-'")
        if name in self._writers or (self.staging / f"{name}.npy").exists():
            raise ValueError(f"cached array {name!r} is given twice")
        return self.staging / f"{name}.npy"

    def put(self, name: str, array: np.ndarray | DiskArray) -> None:
        write_npy(self._path(name), array)

    def append(self, name: str, rows: np.ndarray, total: int) -> None:
        """Add ``rows`` to array ``name``, which will hold ``total`` rows when complete."""
        rows = np.asarray(rows)
        if name not in self._writers:
            self._writers[name] = NpyWriter(self._path(name), total, rows.shape[1:], rows.dtype)
        self._writers[name].append(rows)

    def commit(self, meta: dict) -> None:
        for writer in self._writers.values():
            writer.close()
        final = self.cache.folder(self.key)
        if final.exists():  # left by a run killed before its JSON record: replace it
            shutil.rmtree(final)
        os.replace(self.staging, final)
        atomic_write_text(final.with_suffix(".json"), json.dumps(meta, indent=1))

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        if typ is not None:
            self.abort()
        elif self.staging.exists():  # left without commit: nothing lands
            self.abort()
        return False


class FeatureCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        """Where entry ``key``'s arrays are (its JSON record is beside it, ``folder.with_suffix(".json")``)."""
        return self.root / key[:2] / key

    def meta(self, key: str) -> dict | None:
        """The entry's JSON record, or None if there is no usable entry: none, a record that does not read,
        or a successful one whose arrays are gone or do not read (a cut-off or overwritten ``.npy``; their
        headers and lengths are checked, not their values). A curation that meets None computes the
        entry afresh, so curating again repairs a damaged cache."""
        p = self.folder(key).with_suffix(".json")
        if not p.exists():
            return None
        try:
            meta = json.loads(p.read_text())
        except (OSError, ValueError):  # not JSON, not UTF-8
            return None
        if not isinstance(meta, dict):
            return None
        if meta.get("status") == "ok":
            try:
                if not self.load(key):
                    return None
            except (OSError, ValueError):
                return None
        return meta

    def load(self, key: str) -> dict[str, DiskArray]:
        """The entry's arrays, by name, read from disk when sliced."""
        return {p.stem: read_npy(p) for p in sorted(self.folder(key).glob("*.npy"))}

    def entry(self, key: str) -> CacheEntry:
        return CacheEntry(self, key)

    def scratch(self) -> tempfile.TemporaryDirectory:
        """A scratch folder beside the cache (on its disk, not in a memory-backed /tmp) for decoding."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=f"decode.{_owner()}.", dir=self.root / "tmp")

    def sweep(self) -> int:
        """Remove the scratch and staging folders of processes on this machine that are gone (a curation
        killed with SIGKILL cleans up nothing itself); folders of live processes and of other machines
        sharing the cache are left alone. Returns how many were removed."""
        removed = 0
        for p in [*self.root.glob("tmp/decode.*"), *self.root.glob("??/.*")]:
            parts = p.name.split(".")
            if len(parts) < 4 or not p.is_dir():
                continue
            host, pid = parts[-3], parts[-2]
            if host == _owner().split(".")[0] and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def put(self, key: str, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Store an entry (no arrays: a failure's record, JSON only)."""
        if arrays is None:
            atomic_write_text(self.folder(key).with_suffix(".json"), json.dumps(meta, indent=1))
            return
        with self.entry(key) as e:
            for name, array in arrays.items():
                e.put(name, array)
            e.commit(meta)
