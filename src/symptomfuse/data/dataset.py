"""The curated data set: one row per window (a table row is one window of its recording), its label and
person, and each modality's model inputs for the windows that have it.

A window of a time-aligned A/V recording has every modality its recording has; a separately recorded task
(a voice recording, a hand recording, a table row) has only its own. ``inputs[m]`` holds modality ``m``'s
inputs for the windows that have it, and ``rows[m][i]`` says where window ``i``'s is (-1: none).

Inputs stay in the feature cache on disk: ``inputs[m]`` (a ``WindowInputs``) cuts the windows a batch asks
for out of the cached recordings, so a data set of long recordings is never held in memory whole (a
30-minute video holds each frame in three 3-s windows at a 1-s hop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from symptomfuse.contract import FeatureContract
from symptomfuse.data.cache import FeatureCache
from symptomfuse.data.manifest import read_id_csv
from symptomfuse.errors import UsageError
from symptomfuse.modalities import Modality


class WindowInputs:
    """One modality's model inputs for the windows that have it, read from the cache when indexed: by an
    integer array, a boolean mask or a slice (giving an ndarray), or whole by ``np.asarray``."""

    def __init__(self, modality: Modality, parts: list[tuple[dict, np.ndarray, np.ndarray]]):
        self.modality = modality
        self.parts = parts  # per recording: (its cached arrays, the windows' start times, their numbers)
        self.offsets = np.cumsum([0] + [len(p[1]) for p in parts])
        self.dtype = np.dtype(modality.dtype)
        self.shape = (int(self.offsets[-1]), *modality.input_shape())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            key = np.arange(len(self))[key]
        pos = np.asarray(key)
        if pos.dtype == bool:
            pos = np.flatnonzero(pos)
        pos = pos.astype(np.int64)
        if np.any((pos < 0) | (pos >= len(self))):
            raise IndexError(f"window input outside the {len(self)} windows with {self.modality.name}")
        out = np.empty((len(pos), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self.offsets, pos, side="right") - 1
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            local = pos[sel] - self.offsets[p]
            arrays, starts, index = self.parts[p]
            out[sel] = self.modality.windows(arrays, starts[local], index[local])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


@dataclass
class WindowSet:
    windows: pd.DataFrame  # recording_id, person_id, label, session, task, window, start_s, ...
    classes: list[str]
    y: np.ndarray  # (N,) class index
    inputs: dict[str, WindowInputs]  # modality -> (windows with it, ...) inputs, read from the cache
    rows: dict[str, np.ndarray]  # modality -> (N,) index into inputs[m], -1 where the window lacks it
    contract: FeatureContract
    source: tuple[str, tuple[str, ...]] | None = None  # (curated folder, modalities) it was loaded from

    @property
    def people(self) -> np.ndarray:
        return self.windows["person_id"].to_numpy()

    @property
    def modalities(self) -> list[str]:
        return list(self.inputs)

    def has(self, modality: str) -> np.ndarray:
        """(N,) bool: which windows have ``modality``."""
        return self.rows[modality] >= 0

    def take(self, modality: str, index: np.ndarray) -> np.ndarray:
        """Model inputs of ``modality`` for windows ``index`` (each must have it)."""
        pos = self.rows[modality][np.asarray(index, dtype=np.int64)]
        if np.any(pos < 0):
            raise UsageError(f"{int((pos < 0).sum())} of the windows asked for have no {modality}")
        return self.inputs[modality][pos]


def load_curated(folder: Path, modalities: tuple[str, ...] | list[str] | None = None) -> WindowSet:
    """Load the windows of a ``symptomfuse curate`` output folder for the given modalities (default: all
    curated ones). Windows that have none of them are left out."""
    folder = Path(folder)
    if not (folder / "curation.json").exists():
        raise FileNotFoundError(f"{folder} is not a curated data set (no curation.json): run `symptomfuse curate`")
    contract = FeatureContract.load(folder)
    modalities = list(contract.modalities) if modalities is None else list(modalities)
    unknown = [m for m in modalities if m not in contract.modalities]
    if unknown:
        raise UsageError(f"modalities {unknown} were not curated in {folder}; it has {list(contract.modalities)}")
    info = json.loads((folder / "curation.json").read_text())
    cache_dir = Path(info["cache_dir"])
    if not cache_dir.exists():
        cache_dir = folder / "cache"
    cache = FeatureCache(cache_dir)
    recordings = read_id_csv(folder / "recordings.csv")
    windows = read_id_csv(folder / "windows.csv")
    bound = {m: contract.modality(m) for m in modalities}
    parts = {m: [] for m in modalities}
    have = {m: [] for m in modalities}
    chosen = []
    by_recording = dict(tuple(windows.groupby("recording_id", sort=False)))
    for rec in recordings.itertuples():
        given = [m for m in modalities if m in rec.modalities.split("+")]
        if not given:
            continue
        arrays = cache.load(rec.cache_key)
        if not arrays:
            raise UsageError(f"{folder}: the cached features of recording {rec.recording_id!r} are missing "
                             f"or in an older format (the cache in {cache_dir}); run `symptomfuse curate` again "
                             "with the same manifest and --out: it recomputes what is missing")
        wins = by_recording[rec.recording_id].assign(task=rec.task)
        starts = wins["start_s"].to_numpy(float)
        index = wins["window"].to_numpy(np.int64)  # curate --drop-gated may have left some out
        chosen.append(wins)
        for m in modalities:
            if m in given:
                parts[m].append((arrays, starts, index))
            have[m].append(np.full(len(wins), m in given))
    if not chosen:
        raise UsageError(f"no curated recording has any of {modalities}")
    order = pd.concat(chosen, ignore_index=True)
    classes = list(contract.classes)
    y = order["label"].map({c: i for i, c in enumerate(classes)})
    if y.isna().any():
        raise UsageError(f"labels {sorted(order.label[y.isna()].unique())} are not among the classes {classes}")
    inputs, rows = {}, {}
    for m in modalities:
        mask = np.concatenate(have[m])
        rows[m] = np.where(mask, np.cumsum(mask) - 1, -1)
        inputs[m] = WindowInputs(bound[m], parts[m])
    return WindowSet(order, classes, y.to_numpy().astype(np.int64), inputs, rows, contract,
                     (str(folder), tuple(modalities)))
