"""The feature contract: what a model was trained on, as one small typed object.

Curation writes it (``contract.json`` beside the curated set); training copies it into the run; export
reads it from the run alone, and the live engine from the export. It holds:

* ``timing``: window, hop, frame rate and sample rate, shared by every windowed modality;
* ``modalities``: each curated modality bound to the settings that shaped its features;
* ``classes`` and the explicit ``positive`` class (two classes: the class whose probability is "p"; it is
  always stored last, so index 1 of a probability vector is the positive class);
* ``label_scope``: "person" (one label per person, a diagnosis) or "recording";
* ``ordinal``: whether the classes are ordered ratings (``curate --ordinal``, e.g. MDS-UPDRS item scores
  0-4). Only then are they scored by how far off a prediction is (MAE) and chosen by it; class names that
  happen to be numbers (spoken digits, codes) are not ratings unless the user says so.

``FEATURES_VERSION`` changes when a feature function changes what it computes: a contract from another
version is refused, since a model trained on other features would be fed the wrong numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from symptomfuse import modalities as registry
from symptomfuse.atomic import atomic_write_text, read_json
from symptomfuse.modalities.base import Modality, Timing
from symptomfuse.errors import UsageError

FEATURES_VERSION = 3
SCHEMA = "symptomfuse-contract/1"
FILE = "contract.json"


def order_classes(labels: list[str], positive: str | None) -> list[str]:
    """Classes in their stored order: for two classes the positive one last. Two classes need an explicit
    positive class unless ``labels`` came in the user's own order (then the second is positive)."""
    labels = list(dict.fromkeys(labels))
    if positive is None:
        return labels
    if positive not in labels:
        raise UsageError(f"--positive {positive!r} is not one of the classes {labels}")
    if len(labels) != 2:
        raise UsageError(f"--positive needs exactly two classes; there are {len(labels)}: {labels}")
    return [c for c in labels if c != positive] + [positive]


def rating_values(classes) -> np.ndarray | None:
    """The classes as numbers when there are three or more, each a distinct finite number (ratings such as
    0-4), else None."""
    try:
        values = [float(c) for c in classes]
    except (TypeError, ValueError):
        return None
    if len(values) < 3 or len(set(values)) < len(values) or not all(map(math.isfinite, values)):
        return None
    return np.array(values)


@dataclass(frozen=True)
class FeatureContract:
    timing: Timing = Timing()
    modalities: dict = field(default_factory=dict)  # name -> settings (the modality's Settings dataclass)
    kinds: dict = field(default_factory=dict)  # name -> registered class name when it differs (tables)
    classes: tuple = ()
    positive: str | None = None
    label_scope: str = "person"
    pad_short: bool = False
    ordinal: bool = False  # the classes are ordered ratings (curate --ordinal)

    def __post_init__(self):
        t = self.timing
        if not (0 < t.window_s <= 600 and 0.01 <= t.hop_s <= 600 and 0 < t.fps <= 1000):
            raise UsageError(f"window {t.window_s} s, hop {t.hop_s} s and {t.fps} fps must be positive, with windows "
                             "and hops of at most 600 s, hops of at least 0.01 s (a spectrogram step), and at most "
                             "1000 fps")
        if not 8000 <= t.sample_rate <= 192000:
            raise UsageError(f"sample rate {t.sample_rate} Hz is out of bounds (8000-192000)")
        if self.label_scope not in ("person", "recording"):
            raise UsageError(f"label scope must be 'person' or 'recording', got {self.label_scope!r}")
        if self.positive is not None and (len(self.classes) != 2 or self.classes[-1] != self.positive):
            raise UsageError(f"the positive class {self.positive!r} must be the last of two classes {self.classes}")
        if self.ordinal and self.classes and rating_values(self.classes) is None:
            raise UsageError(f"--ordinal: the classes must be ordered ratings, three or more distinct numbers (such as "
                             f"--labels 0,1,2,3,4); they are {', '.join(self.classes)}")
        for m in self.modalities:
            self.modality(m).validate()

    @classmethod
    def build(cls, names: list[str], timing: Timing = Timing(), settings: dict | None = None, **kw) -> "FeatureContract":
        """A contract for the named modalities, each with its given settings (dataclass or dict) or defaults."""
        settings = settings or {}
        mods = {}
        for m in registry.check_names(names):
            s = settings.get(m)
            kind = registry.get(m)
            mods[m] = kind.settings_from(s) if isinstance(s, dict) else (s if s is not None else kind.Settings())
        return cls(timing=timing, modalities=mods, **kw)

    def modality(self, name: str) -> Modality:
        if name not in self.modalities:
            raise UsageError(f"modality {name!r} is not in this feature contract ({', '.join(self.modalities)})")
        return registry.get(name)(self.modalities[name], self.timing)

    def bound(self) -> dict[str, Modality]:
        return {m: self.modality(m) for m in self.modalities}

    def frame_config(self, names=None):
        """The size and rate decoded frames are brought to: that of the (first) modality among ``names``
        (default: all) that has frames of its own, or None when none has."""
        mods = [self.modality(m) for m in (self.modalities if names is None else names)]
        return next((m.frame_config() for m in mods if hasattr(m, "frame_config")), None)

    @property
    def positive_index(self) -> int | None:
        return len(self.classes) - 1 if self.positive is not None else None

    def with_classes(self, classes: list[str], positive: str | None) -> "FeatureContract":
        return replace(self, classes=tuple(order_classes(classes, positive)), positive=positive)

    def class_values(self) -> np.ndarray | None:
        """The classes as numbers when they are ordinal ratings (``curate --ordinal``), else None."""
        return rating_values(self.classes) if self.ordinal else None

    def cache_settings(self, modalities: list[str]) -> dict:
        """What shapes a recording's cache entry: the feature version, timing, and the settings of the
        modalities it has."""
        return {"features_version": FEATURES_VERSION, "gates_version": 1, "timing": asdict(self.timing),
                "pad_short": self.pad_short,
                "modalities": {m: self.modality(m).settings_json() for m in sorted(modalities)}}

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "features_version": FEATURES_VERSION, "timing": asdict(self.timing),
                "modalities": {m: {"kind": self.kinds.get(m, m), "settings": self.modality(m).settings_json()}
                               for m in self.modalities},
                "classes": list(self.classes), "positive": self.positive, "label_scope": self.label_scope,
                "pad_short": self.pad_short, **({"ordinal": True} if self.ordinal else {})}

    @classmethod
    def from_json(cls, data: dict) -> "FeatureContract":
        """Rebuild and check a contract (from contract.json, run.json or export.json)."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UsageError(f"not a feature contract of this version ({SCHEMA}): curate, train and export again")
        if data.get("features_version") != FEATURES_VERSION:
            raise UsageError(f"these features come from features version {data.get('features_version')}, but this "
                             f"code computes version {FEATURES_VERSION}: curate, train and export again")
        classes = data.get("classes")
        if isinstance(classes, list) and len(classes) < 2 and all(isinstance(c, str) for c in classes):
            raise UsageError(f"the curated data holds {f'one class, {classes[0]!r}' if classes else 'no class'}: a "
                             "classifier needs two or more; curate rows of two classes or more (--labels names them)")
        try:
            timing = Timing(**data["timing"])
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in asdict(timing).values()):
                raise TypeError("timing values must be numbers")
            kinds, mods = {}, {}
            for name, entry in data["modalities"].items():
                kind = entry.get("kind", name)
                if kind != name:
                    registry.ensure(name, kind)
                    kinds[name] = kind
                mods[name] = registry.get(name).settings_from(entry["settings"])
            classes = data["classes"]
            if not isinstance(classes, list) or not 2 <= len(classes) <= 1000 or not all(isinstance(c, str) for c in classes):
                raise TypeError("classes must be a list of 2 to 1000 names")
            if len(set(classes)) < len(classes):
                raise TypeError(f"classes {classes} name one class twice")
            ordinal = data.get("ordinal", False)
            if not isinstance(ordinal, bool):
                raise TypeError("ordinal must be true or false")
            return cls(timing, mods, kinds, tuple(classes), data.get("positive"), data["label_scope"],
                       bool(data.get("pad_short", False)), ordinal)
        except UsageError as exc:  # a setting out of bounds: said as the stored contract's, not the user's flag
            raise UsageError(f"the feature contract does not hold ({exc}): curate, train and export again") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UsageError(f"the feature contract is malformed ({type(exc).__name__}: {exc}): curate, train and "
                             "export again") from None

    def save(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / FILE, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, folder: Path) -> "FeatureContract":
        path = Path(folder) / FILE
        if not path.exists():
            raise FileNotFoundError(f"{folder} has no {FILE}: curate it with this version of symptomfuse")
        return cls.from_json(read_json(path, "curate it again"))
