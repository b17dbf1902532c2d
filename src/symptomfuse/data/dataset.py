"""The curated data set in memory: one row per window (a table row is one window of its recording), its
label and person, and each modality's model inputs for the windows that have it.

A window of a time-aligned A/V recording has every modality its recording has; a separately recorded task
(a voice recording, a hand recording, a table row) has only its own. ``inputs[m]`` holds modality ``m``'s
inputs for the windows that have it, and ``rows[m][i]`` says where window ``i``'s is (-1: none).
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


@dataclass
class WindowSet:
    windows: pd.DataFrame  # recording_id, person_id, label, session, task, window, start_s, ...
    classes: list[str]
    y: np.ndarray  # (N,) class index
    inputs: dict[str, np.ndarray]  # modality -> (windows with it, ...) array
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
        wins = by_recording[rec.recording_id].assign(task=rec.task)
        starts = wins["start_s"].to_numpy(float)
        chosen.append(wins)
        for m in modalities:
            if m in given:
                x = bound[m].windows(arrays, starts)
                if len(x) != len(wins):  # windows left out by curate --drop-gated
                    x = x[wins["window"].to_numpy(int)]
                parts[m].append(x)
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
        shape = bound[m].input_shape()
        inputs[m] = np.concatenate(parts[m]) if parts[m] else np.zeros((0, *shape), bound[m].dtype)
    return WindowSet(order, classes, y.to_numpy().astype(np.int64), inputs, rows, contract,
                     (str(folder), tuple(modalities)))
