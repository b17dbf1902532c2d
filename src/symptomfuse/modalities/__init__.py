"""The modality registry. Each built-in modality is one module; importing it registers it.

    from symptomfuse import modalities
    modalities.available()          # ['audio', 'video', 'keypoints']
    modalities.get("audio")         # the class; FeatureContract.modality("audio") binds it to settings

Feature tables are modalities too, named by the user: ``ensure("smile", "table")`` registers one.
"""

from __future__ import annotations

from symptomfuse.modalities.base import (Modality, SourceMedia, Timing, available, check_names, get, register,
                                         unregister)

# The built-in modalities: one line each.
from symptomfuse.modalities import audio as _audio  # noqa: E402,F401
from symptomfuse.modalities import video as _video  # noqa: E402,F401
from symptomfuse.modalities import keypoints as _keypoints  # noqa: E402,F401
from symptomfuse.modalities import voice as _voice  # noqa: E402,F401
from symptomfuse.modalities import ge2e as _ge2e  # noqa: E402,F401
from symptomfuse.modalities import hand_measures as _hand_measures  # noqa: E402,F401
from symptomfuse.modalities import face as _face  # noqa: E402,F401
from symptomfuse.modalities import blendshapes as _blendshapes  # noqa: E402,F401
from symptomfuse.modalities.table import Table  # noqa: E402
from symptomfuse.errors import UsageError

TEMPLATES = {"table": Table}  # kinds whose modalities the user names


def ensure(name: str, kind: str) -> type[Modality]:
    """Register (once) a modality called ``name`` of a user-named kind such as "table"."""
    if kind not in TEMPLATES:
        raise UsageError(f"unknown modality kind {kind!r}; available: {', '.join(TEMPLATES)}")
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise UsageError(f"modality name {name!r}: use letters, digits and _ (starting with a letter)")
    try:
        existing = get(name)
    except ValueError:
        return register(type(f"{kind.title()}_{name}", (TEMPLATES[kind],), {"name": name}))
    if not issubclass(existing, TEMPLATES[kind]):
        raise UsageError(f"{name!r} is already a modality of another kind: choose another name")
    return existing


__all__ = ["Modality", "SourceMedia", "Timing", "available", "check_names", "ensure", "get", "register",
           "unregister"]
