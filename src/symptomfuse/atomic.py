"""Atomic artifact writes: a file appears whole under its final name, or not at all.

Everything the tool writes (media, caches, reports, weights) goes through a temporary file in the same
folder and ``os.replace``, so an interrupted run never leaves a half-written artifact that a later run
would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from symptomfuse.errors import UsageError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, on error remove it.

    The temporary name keeps ``path``'s suffix so that tools which pick a format by extension work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = _umask()
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may make the file anew with its own mode (safetensors does):
        # every artifact gets the permissions open() would give it
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike, redo: str):
    """A JSON artifact read back (a contract, run.json, a run id stamp, curation.json): one that is not
    UTF-8 JSON (cut off, edited, overwritten) is refused with what to do, ``redo``, never a traceback."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{path} is not valid JSON ({exc}): {redo}") from None


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new folder beside ``path`` to fill; on success it takes ``path``'s place (a folder there
    before is moved aside, then removed), on error it is removed and ``path`` is left as it was. So a
    reader finds the old folder whole or the new one whole, never a mix of the two (a re-export whose
    weights are new but whose manifest is old), and a failure part-way loses nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_not_a_file(out: Path) -> None:
    """An --out that exists must be a folder."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file: give a folder")


def check_out_folder(out: Path, own: tuple[str, ...], command: str) -> None:
    """``out`` must be a new or empty folder, or one that holds only what ``command`` writes (``own``: an
    earlier run of it, finished or killed): never a folder of a person's own files, which the command
    would mix with its artifacts or overwrite. Hidden files are unfinished atomic writes."""
    out = Path(out)
    check_not_a_file(out)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own and not p.name.startswith(".")) \
        if out.is_dir() else []
    if foreign:
        raise UsageError(f"{out} holds files that {command} did not write ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}): choose a new or empty --out, or the folder of an "
                         f"earlier `{command}`")
