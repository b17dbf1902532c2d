"""The curated data set in memory: one row per window, its label and person, and each modality's input.

Inputs per modality (the names models use):
  audio      log-mel spectrogram (n_mels, frames) float32
  video      frames (T, H, W, 3) uint8
  keypoints  keypoint features (T, 127) float32
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from symptomfuse.data.cache import FeatureCache

MODALITIES = ("audio", "video", "keypoints")
_CACHE_KEYS = {"audio": "audio_logmel", "keypoints": "keypoint_features"}


@dataclass
class WindowSet:
    windows: pd.DataFrame  # recording_id, person_id, label, session, window, start_s, ...
    classes: list[str]
    y: np.ndarray  # (N,) class index
    inputs: dict[str, np.ndarray]  # modality -> (N, ...) array

    @property
    def people(self) -> np.ndarray:
        return self.windows["person_id"].to_numpy()


def load_curated(folder: Path, modalities: tuple[str, ...] | list[str]) -> WindowSet:
    """Load the windows of a ``symptomfuse curate`` output folder for the given modalities."""
    folder = Path(folder)
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
    if not (folder / "curation.json").exists():
        raise FileNotFoundError(f"{folder} is not a curated data set (no curation.json): run `symptomfuse curate`")
    info = json.loads((folder / "curation.json").read_text())
    cache_dir = Path(info["cache_dir"])
    if not cache_dir.exists():
        cache_dir = folder / "cache"
    cache = FeatureCache(cache_dir)
    text = {"person_id": str, "session": str, "label": str, "recording_id": str}
    recordings = pd.read_csv(folder / "recordings.csv", dtype=text)
    windows = pd.read_csv(folder / "windows.csv", dtype=text)
    cfg = info["config"]
    win_frames = int(round(cfg["window_s"] * cfg["frames"]["fps"]))
    parts = {m: [] for m in modalities}
    by_recording = dict(tuple(windows.groupby("recording_id", sort=False)))
    for rec in recordings.itertuples():
        have = set(rec.modalities.split("+"))
        missing = [m for m in modalities if m not in have]
        if missing:
            raise ValueError(f"recording {rec.recording_id} has no {missing}; curate with those modalities "
                             "(keypoints need a keypoints column) or train without them")
        arrays = cache.load(rec.cache_key)
        starts = by_recording[rec.recording_id]["start_s"].to_numpy()
        for m in modalities:
            if m == "video":
                first = np.round(starts * cfg["frames"]["fps"]).astype(int)
                parts[m].append(np.stack([arrays["frames"][f:f + win_frames] for f in first]))
            else:
                parts[m].append(arrays[_CACHE_KEYS[m]])
    order = pd.concat([by_recording[r] for r in recordings.recording_id], ignore_index=True)
    classes = list(info["classes"])
    y = order["label"].map({c: i for i, c in enumerate(classes)})
    if y.isna().any():
        raise ValueError(f"labels {sorted(order.label[y.isna()].unique())} are not among the classes {classes}")
    y = y.to_numpy()
    return WindowSet(order, classes, y.astype(np.int64), {m: np.concatenate(parts[m]) for m in modalities})
