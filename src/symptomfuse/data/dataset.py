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
from typing import NamedTuple

import numpy as np
import pandas as pd

from symptomfuse.atomic import read_json
from symptomfuse.contract import FeatureContract
from symptomfuse.data.cache import FeatureCache
from symptomfuse.data.manifest import check_lines, read_checked_csv
from symptomfuse.errors import UsageError
from symptomfuse.modalities import Modality


class _Part(NamedTuple):
    """One recording's share of a modality's inputs: its cached arrays (in cache entry ``entry``), and its
    windows' start times and numbers."""

    recording_id: str
    entry: Path
    arrays: dict
    starts: np.ndarray
    index: np.ndarray


class WindowInputs:
    """One modality's model inputs for the windows that have it, read from the cache when indexed: by an
    integer array, a boolean mask or a slice (giving an ndarray), or whole by ``np.asarray``."""

    def __init__(self, modality: Modality, parts: list[_Part]):
        self.modality = modality
        self.parts = parts  # per recording
        self.offsets = np.cumsum([0] + [len(p.starts) for p in parts])
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
            out[sel] = self._cut(self.parts[p], pos[sel] - self.offsets[p])
        return out

    def check(self, p: int) -> None:
        """Cut recording ``p``'s furthest windows (by number and by start), as training will."""
        part = self.parts[p]
        self._cut(part, np.unique([int(np.argmax(part.index)), int(np.argmax(part.starts))]))

    def _cut(self, part: _Part, local: np.ndarray) -> np.ndarray:
        """Windows ``local`` of one recording, which must be there and of the shape the contract gives (a
        cut-off or replaced cache file, or a contract.json whose settings were edited, is refused with what
        to do, not met as a broadcasting error mid-training)."""
        m = self.modality
        try:
            x = m.windows(part.arrays, part.starts[local], part.index[local])
        except (KeyError, IndexError, ValueError) as exc:
            raise _damaged(part, f"{m.name}: {type(exc).__name__}: {exc}") from None
        if np.shape(x) != (len(local), *self.shape[1:]):
            raise UsageError(f"the cached {m.name} windows of recording {part.recording_id!r} have the shape "
                             f"{np.shape(x)[1:]}, where the feature contract (contract.json) gives {self.shape[1:]}: "
                             "if contract.json was edited, curate again with the same manifest and --out to write "
                             f"it afresh; if not, the cache entry is damaged: delete {part.entry} and "
                             f"{part.entry}.json, then curate again")
        return x

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


# The columns of curate's two tables that loading reads, and what each must hold (``CELL_KINDS``).
REDO = "curate again with the same manifest and --out to write it afresh"  # what to do about a damaged folder

_NEEDS = {"recordings.csv": {"recording_id": "text", "person_id": "text", "label": "text", "modalities": "text",
                             "n_windows": "count", "cache_key": "key"},
          "windows.csv": {"recording_id": "text", "person_id": "text", "label": "text", "window": "count",
                          "start_s": "time"}}


def _read_tables(folder: Path, curated: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """recordings.csv and windows.csv, checked before anything is read from the cache: the columns loading
    reads, each cell's kind, each recording's modalities among the ``curated`` ones, and that the two
    tables agree (every window's recording, person and label; window numbers within their recording's). A
    table that was edited or damaged is refused with the file, the line and what to do, never read
    half-way into wrong inputs (a window number of -1 would take a recording's last window)."""
    tables = {name: read_checked_csv(folder / name, needs, REDO) for name, needs in _NEEDS.items()}
    recordings, windows = tables["recordings.csv"], tables["windows.csv"]
    if recordings.recording_id.duplicated().any():
        rid = recordings.recording_id[recordings.recording_id.duplicated()].iloc[0]
        raise UsageError(f"{folder / 'recordings.csv'} lists recording {rid!r} twice; {REDO}")
    given = recordings.modalities.str.split("+")
    check_lines(folder / "recordings.csv", [
        (~given.map(lambda ms: set(ms) <= set(curated)).to_numpy(),
         lambda i: f"modalities is {recordings.modalities[i]!r}, not '+'-joined names of curated modalities "
                   f"({', '.join(curated)})")], REDO)
    own = recordings.set_index("recording_id").reindex(windows.recording_id).reset_index(drop=True)
    known = own.n_windows.notna().to_numpy()
    w, r = windows, own  # line i of windows.csv, and its recording's line of recordings.csv
    check_lines(folder / "windows.csv", [
        (~known, lambda i: f"recording {w.recording_id[i]!r} is not in recordings.csv"),
        (known & (w.window.to_numpy() >= r.n_windows.fillna(0).to_numpy()),
         lambda i: f"recording {w.recording_id[i]!r} has {int(r.n_windows[i])} window(s), numbered from 0, and this "
                   f"one is number {w.window[i]}"),
        (w.duplicated(["recording_id", "window"]).to_numpy(),
         lambda i: f"window {w.window[i]} of recording {w.recording_id[i]!r} is listed twice"),
        (known & ((w.person_id != r.person_id) | (w.label != r.label)).to_numpy(),
         lambda i: f"its person and label ({w.person_id[i]!r}, {w.label[i]!r}) are not its recording's "
                   f"({r.person_id[i]!r}, {r.label[i]!r}) in recordings.csv"),
    ], REDO)
    alone = ~recordings.recording_id.isin(windows.recording_id)
    if alone.any():
        raise UsageError(f"{folder / 'recordings.csv'}: recording {recordings.recording_id[alone].iloc[0]!r} has no "
                         f"window in windows.csv ({int(alone.sum())} such recording(s)); {REDO}")
    return recordings, windows


def _damaged(part: _Part, what: str) -> UsageError:
    return UsageError(f"the cached features of recording {part.recording_id!r} are damaged ({what}): curate "
                      "again with the same manifest and --out; it recomputes the entries whose files do not read "
                      f"(else delete {part.entry} and {part.entry}.json first)")


def _cache_dir(folder: Path, contract: FeatureContract) -> Path:
    """The cache the folder was curated into (curation.json names it: it may be shared, --cache-dir), or
    the folder's own ``cache`` when that one is gone (a curated folder copied elsewhere). Its entries were
    computed with the feature settings curation.json records, which must be ``contract``'s."""
    info = read_json(folder / "curation.json", REDO)
    named = info.get("cache_dir") if isinstance(info, dict) else None
    if not isinstance(named, str):
        raise UsageError(f"{folder / 'curation.json'} names no cache folder (cache_dir: {named!r}); {REDO}")
    features = json.loads(json.dumps(contract.cache_settings(list(contract.modalities))))
    if "features" in info and info["features"] != features:  # absent: curated before it was recorded
        raise UsageError(f"{folder / 'contract.json'} does not give the feature settings the folder was curated with "
                         f"(curation.json records them): it was edited afterwards; {REDO}")
    return Path(named) if Path(named).exists() else folder / "cache"


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
    cache_dir = _cache_dir(folder, contract)
    cache = FeatureCache(cache_dir)
    recordings, windows = _read_tables(folder, list(contract.modalities))
    bound = {m: contract.modality(m) for m in modalities}
    parts = {m: [] for m in modalities}
    have = {m: [] for m in modalities}
    chosen = []
    by_recording = dict(tuple(windows.groupby("recording_id", sort=False)))
    for rec in recordings.itertuples():
        given = [m for m in modalities if m in rec.modalities.split("+")]
        if not given:
            continue
        wins = by_recording[rec.recording_id]
        part = _Part(rec.recording_id, cache.folder(rec.cache_key), {},
                     wins["start_s"].to_numpy(float), wins["window"].to_numpy(np.int64))  # --drop-gated leaves gaps
        try:
            part = part._replace(arrays=cache.load(rec.cache_key))
        except ValueError as exc:  # a .npy file that is not one (cut off, overwritten)
            raise _damaged(part, str(exc)) from None
        if not part.arrays:
            raise UsageError(f"{folder}: the cached features of recording {rec.recording_id!r} are missing "
                             f"or in an older format (the cache in {cache_dir}); run `symptomfuse curate` again "
                             "with the same manifest and --out: it recomputes what is missing")
        chosen.append(wins)
        for m in modalities:
            if m in given:
                parts[m].append(part)
            have[m].append(np.full(len(wins), m in given))
    if not chosen:
        raise UsageError(f"no curated recording has any of {modalities}")
    order = pd.concat(chosen, ignore_index=True)
    order["task"] = order.recording_id.map(recordings.set_index("recording_id").task)
    classes = list(contract.classes)
    y = order["label"].map({c: i for i, c in enumerate(classes)})
    if y.isna().any():
        raise UsageError(f"labels {sorted(order.label[y.isna()].unique())} are not among the classes {classes}")
    inputs, rows = {}, {}
    for m in modalities:
        mask = np.concatenate(have[m])
        rows[m] = np.where(mask, np.cumsum(mask) - 1, -1)
        inputs[m] = WindowInputs(bound[m], parts[m])
        if parts[m]:
            inputs[m].check(0)  # one recording each: the contract and the cache agree
    return WindowSet(order, classes, y.to_numpy().astype(np.int64), inputs, rows, contract,
                     (str(folder), tuple(modalities)))
