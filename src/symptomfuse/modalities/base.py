"""What a modality is: one class that declares everything the pipeline needs to know about one input.

A modality names its input (``name``), what feeds it (``source``: a sound stream, video frames, hand
landmarks, or one row of a feature table), the settings that shape its features (a frozen dataclass,
``Settings``: they enter the cache key and the run's feature contract), the one feature function that
curation and the live engine both call, the shape and dtype of one model input, its default encoder and
the keyword arguments the encoder takes from the feature shapes, its training augmentations (keyed by the
encoder's prepared-input kind), its quality gate and how the live engine reads a window of it. Curation,
the data set, training, export, the live engine, the command line and the live page iterate over the
registry (``symptomfuse.modalities``); no other file names a modality.

To add a modality: write one module with a ``@register``-ed subclass of ``Modality`` and import it in
``symptomfuse/modalities/__init__.py`` (or anywhere before use: a test may register its own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from symptomfuse.data.ondisk import DiskArray
from symptomfuse.errors import UsageError

SOURCES = ("audio", "video", "landmarks", "table")


@dataclass(frozen=True)
class Timing:
    """The clock every windowed modality shares: window length and hop (s), the video frame rate the
    frames and landmarks are brought to, and the audio sample rate."""

    window_s: float = 3.0
    hop_s: float = 1.0
    fps: float = 25.0
    sample_rate: int = 16000

    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    def window_frames(self) -> int:
        return int(round(self.window_s * self.fps))

    def starts(self, duration_s: float) -> np.ndarray:
        """Start times of the windows that fit wholly in ``duration_s``."""
        if duration_s + 1e-9 < self.window_s:
            return np.zeros(0)
        n = int(np.floor((duration_s - self.window_s) / self.hop_s + 1e-9)) + 1
        return np.arange(n) * self.hop_s


@dataclass(frozen=True)
class NoSettings:
    """For modalities whose features have no settings of their own."""


@dataclass
class SourceMedia:
    """A decoded recording as curation hands it to each modality's ``track`` and ``extract``: audio samples
    and frames on one clock (``data.media.decode``), and the row's own files (e.g. a landmark file) by
    column name. Audio and frames may stay on disk (``data.ondisk.DiskArray``): index them by slices
    (``media.audio[a:b]``), never as a whole, so that a long recording is read a window at a time."""

    audio: np.ndarray | DiskArray | None  # (samples,) float32 at Timing.sample_rate
    frames: np.ndarray | DiskArray | None  # (frames, H, W, 3) uint8 at Timing.fps
    source_frame_index: np.ndarray | None  # index of the decoded source frame behind each frame
    source_frames: int
    source_size: tuple[int, int] | None  # (width, height) of the source video
    files: dict[str, Path]  # manifest column -> path, for the files a modality reads itself
    table_row: np.ndarray | None = None  # a feature-table row's values (table modalities)
    # hook key -> what that ``source_frame_hook`` gave for each decoded source frame (decode order)
    per_source_frame: dict[str, np.ndarray | DiskArray] = field(default_factory=dict)


class Modality:
    """Base class. A subclass is one modality; an instance is that modality bound to its settings and the
    shared ``Timing`` (the feature contract makes them: ``FeatureContract.modality(name)``)."""

    name: ClassVar[str]
    source: ClassVar[str]  # one of SOURCES
    needs: ClassVar[tuple[str, ...]] = ()  # media streams to decode for it: "audio" and/or "video"
    column: ClassVar[str | None] = None  # manifest column of a file of its own (e.g. landmarks)
    help: ClassVar[str] = ""  # one line for --help
    default_encoder: ClassVar[str]
    dtype: ClassVar[type] = np.float32
    Settings: ClassVar[type] = NoSettings
    live_qualities: ClassVar[tuple[str, ...]] = ("ok", "no_data")  # what its live gate can answer
    live_label: ClassVar[str] = ""  # what the live page calls its quality indicator (default: the name)
    live_landmarks: ClassVar[str | None] = None  # landmarks the live engine must find in frames ("hands", "face")
    tasks: ClassVar[tuple] = ()  # the guided-session tasks it is measured on (``symptomfuse.tasks``)
    augmentations: ClassVar[dict[str, Callable]] = {}  # encoder input_kind -> fn(prepared batch, generator)
    windowed: ClassVar[bool] = True
    curated_by_default: ClassVar[bool] = True  # False: only when named (curate --modalities ...)
    # command-line options of ``curate`` that set its Settings: flag -> (parse text -> {field: value}, help)
    options: ClassVar[dict[str, tuple[Callable[[str], dict], str]]] = {}

    def __init__(self, settings=None, timing: Timing = Timing()):
        self.settings = settings if settings is not None else self.Settings()
        if not isinstance(self.settings, self.Settings):
            raise TypeError(f"{self.name} takes {self.Settings.__name__} settings, got {type(self.settings).__name__}")
        self.timing = timing

    # ---- the contract -------------------------------------------------------------------------------------

    @classmethod
    def settings_from(cls, values: dict):
        """Rebuild ``Settings`` from its JSON form; unknown keys are refused with what exists."""
        if not isinstance(values, dict):
            raise UsageError(f"{cls.name} settings must be an object of settings, got {str(values)[:80]!r}")
        known = {f.name for f in fields(cls.Settings)}
        extra = set(values) - known
        if extra:
            raise UsageError(f"{cls.name} settings have unknown key(s) {sorted(extra)}; known: {sorted(known)}")
        return cls.Settings(**values)

    def settings_json(self) -> dict:
        return asdict(self.settings)

    def validate(self) -> None:
        """Raise ValueError if the settings cannot give a window of input (e.g. a window too short)."""

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window's model input."""
        raise NotImplementedError

    def encoder_args(self) -> dict:
        """Keyword arguments the default encoder takes from the feature shapes (e.g. ``n_mels``)."""
        return {}

    def feature_names(self) -> tuple[str, ...] | None:
        """For a modality whose input is a vector of named measures, their names (reports and permutation
        importance use them); None otherwise."""
        return None

    # ---- curation -----------------------------------------------------------------------------------------

    def file_column(self) -> str | None:
        """The manifest column of a file this modality reads itself, with these settings (None: its input
        comes from the media streams alone)."""
        return self.column

    def available(self, files: dict[str, Path | None]) -> bool:
        """Whether a manifest row gives this modality's input; ``files`` maps streams and columns to paths."""
        return all(files.get(s) is not None for s in self.needs) and (
            self.file_column() is None or files.get(self.file_column()) is not None)

    def source_frame_hook(self) -> tuple[str, Callable] | None:
        """``(key, fn)``: a function curation calls on every decoded video frame at its full size (an
        ``av.VideoFrame``), before frames are brought to the shared rate and size, for a modality that needs
        the full picture (landmarks); a fresh one per recording (trackers keep state). Its results (one
        array per frame) reach ``track`` and ``extract`` as ``media.per_source_frame[key]`` (on disk: index
        it). Modalities that need the same thing (e.g. MediaPipe's hands) give the same key, and it runs
        once. None (the default): no hook."""
        return None

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays to cache with one row per window starting at ``starts`` (s). Curation calls it on a
        recording's windows a run at a time (so that memory does not grow with a recording's length) and
        appends the runs; the rows must not depend on which run a window is in (beyond float rounding).
        Raises MediaError."""
        raise NotImplementedError

    def track(self, media: SourceMedia) -> dict[str, np.ndarray | DiskArray]:
        """Arrays to cache with one row per frame of the whole recording at the shared rate, which
        ``windows`` cuts at load time (e.g. frames: windows overlap, so cutting them at curation would
        store each frame several times). Called once per recording; a DiskArray is copied a run of rows at
        a time. Default: none."""
        return {}

    def windows(self, arrays: dict, starts: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Model inputs (len(index), *input_shape) of one recording's windows number ``index`` (rows of
        ``extract``'s arrays), which start at ``starts`` (s), from its cached arrays (on disk: slice them)."""
        return arrays[self.name][index]

    def summaries(self, arrays: dict[str, np.ndarray], starts: np.ndarray) -> dict[str, list[float]]:
        """Per-window figures for windows.csv (e.g. loudness), by column name."""
        return {}

    # ---- baselines ----------------------------------------------------------------------------------------

    def baseline_features(self, x: np.ndarray) -> np.ndarray | None:
        """A flat (n, d) summary of model inputs for the scikit-learn baselines, or None for none."""
        return None

    # ---- live ---------------------------------------------------------------------------------------------

    def live_state(self, keep_s: float):
        """Per-stream state the live reader keeps for ``keep_s`` seconds (e.g. a spectrogram cache); None
        for none."""
        return None

    def live_window(self, streams, state, start: float, wanted: bool) -> tuple[str, np.ndarray | None]:
        """Gate the window from ``start`` in the engine's rings (``stream.buffers.Streams``): its quality,
        and when it passed and ``wanted``, the model input (1, *input_shape)."""
        return "no_data", None


class Measures:
    """Mixin (listed before the modality's base) for a modality whose input is one vector of named measures
    per window, ``NAMES``: its shape, the ``mlp`` encoder and its width, the names for reports, and the
    vector itself as the baselines' features."""

    NAMES: ClassVar[tuple[str, ...]] = ()
    default_encoder = "mlp"

    def input_shape(self) -> tuple[int, ...]:
        return (len(self.NAMES),)

    def encoder_args(self) -> dict:
        return {"n_features": len(self.NAMES)}

    def feature_names(self) -> tuple[str, ...]:
        return self.NAMES

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        return x


_REGISTRY: dict[str, type[Modality]] = {}


def register(cls: type[Modality]) -> type[Modality]:
    """Class decorator: add a modality to the registry."""
    if not getattr(cls, "name", None) or cls.source not in SOURCES:
        raise UsageError(f"a modality needs a name and a source among {SOURCES}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise UsageError(f"modality {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a modality (tests that register their own clean up with this)."""
    _REGISTRY.pop(name, None)


def available() -> list[str]:
    """Registered modality names, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> type[Modality]:
    if name not in _REGISTRY:
        raise UsageError(f"unknown modality {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def check_names(names, what: str = "modalities") -> list[str]:
    """Validate a list of modality names; the message lists what exists."""
    names = list(names)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise UsageError(f"unknown {what} {unknown}; available: {', '.join(_REGISTRY)}")
    return names
