"""An export folder is untrusted input: checks before anything in it is opened or allocated.

A model folder may come from anywhere (a colleague, a download, a tampered disk). Before the live engine
uses one:

- every file it names is a relative path that resolves inside the folder (no ``/etc/hostname``, no
  ``../../``), and is a regular file;
- every file's SHA-256 matches the one recorded at export (``export.json`` ``sha256``), so a truncated,
  swapped or corrupted weight file is refused by name; the hashes guard against accidents, not against
  someone who rewrites ``export.json`` too, so the contents are checked as well:
- model configs hold only plain numbers, strings and short lists within sane bounds (no dimension that
  would ask for terabytes), checked before a single tensor is allocated;
- weight files are read as safetensors only (never pickle), and their tensors must fit the model.

Every problem is one ``UsageError`` line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

from symptomfuse.errors import UsageError

MAX_INT = 65_536  # any integer in a model config (dims, channels, layers, bands)
MAX_LIST = 64  # entries of a list in a model config
MAX_DEPTH = 6


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def confined(folder: Path, rel, what: str) -> Path:
    """``folder / rel`` when ``rel`` is a relative path naming a regular file inside ``folder``."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UsageError(f"{folder}: {what} must name a file in the folder, got {rel!r}")
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts:
        raise UsageError(f"{folder}: {what} {rel!r} points outside the model folder")
    root = folder.resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        raise UsageError(f"{folder}: {what} {rel!r} points outside the model folder")
    if not full.is_file():
        raise UsageError(f"{folder}: {what} {rel!r} is missing (or not a regular file)")
    return full


def _check_hash(folder: Path, rel: str, hashes: dict, digest: Callable[[], str]) -> None:
    """That ``digest()`` is the SHA-256 recorded for ``rel``."""
    expected = hashes.get(rel) if isinstance(hashes, dict) else None
    if not isinstance(expected, str):
        raise UsageError(f"{folder}: export.json records no SHA-256 for {rel}: export the model again")
    if digest() != expected:
        raise UsageError(f"{folder}: {rel} is not the file that was exported (SHA-256 differs): corrupted or "
                         "replaced; export the model again")


def checked_file(folder: Path, rel, hashes: dict, what: str) -> Path:
    """A confined file whose SHA-256 is the one recorded for it."""
    path = confined(folder, rel, what)
    _check_hash(folder, rel, hashes, lambda: sha256(path))
    return path


def checked_bytes(folder: Path, rel, hashes: dict, what: str) -> bytes:
    """The bytes of a confined file, read once and hashed as read: what is used is what was checked."""
    data = confined(folder, rel, what).read_bytes()
    _check_hash(folder, rel, hashes, lambda: hashlib.sha256(data).hexdigest())
    return data


def check_config(value, where: str, depth: int = 0) -> None:
    """Plain JSON values within bounds: finite numbers, integers up to MAX_INT, short lists, no deep nesting."""
    if depth > MAX_DEPTH:
        raise UsageError(f"{where}: nested too deeply")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        if isinstance(value, str) and len(value) > 200:
            raise UsageError(f"{where}: a string of {len(value)} characters")
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise UsageError(f"{where}: {value} is out of bounds (at most {MAX_INT})")
        return
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > 1e6:
            raise UsageError(f"{where}: {value} is not a sane number")
        return
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise UsageError(f"{where}: a list of {len(value)} entries (at most {MAX_LIST})")
        for i, v in enumerate(value):
            check_config(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_LIST:
            raise UsageError(f"{where}: {len(value)} keys (at most {MAX_LIST})")
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"{where}: a key that is not text: {k!r}")
            check_config(v, f"{where}.{k}", depth + 1)
        return
    raise UsageError(f"{where}: unexpected value of type {type(value).__name__}")


def exact_keys(entry, required: set, optional: set, where: str) -> None:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected an object, got {type(entry).__name__}")
    missing, extra = required - set(entry), set(entry) - required - optional
    if missing:
        raise UsageError(f"{where}: missing {sorted(missing)}")
    if extra:
        raise UsageError(f"{where}: unexpected {sorted(extra)}")
