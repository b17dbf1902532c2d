"""Curation: manifest + media files -> validated, windowed, cached features, a quarantine and a summary.

Steps, in order: read and check the manifest's rows (``manifest.check_rows``); hash each row's files and
reject missing, empty and duplicate files; look the content hash up in the feature cache; decode what is
not cached (``media.decode``), cut it into aligned windows and compute features with the per-modality
feature functions; write ``recordings.csv``, ``windows.csv``, ``quarantine.csv``, ``curation.json``,
``summary.json`` and ``summary.png``. A bad row never stops the run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from symptomfuse.atomic import atomic_write_text
from symptomfuse.data.cache import FeatureCache, cache_key, file_digest
from symptomfuse.data.manifest import REASONS, Candidate, Columns, Quarantined, check_rows, read_manifest
from symptomfuse.data.media import MediaError, decode
from symptomfuse.features.audio import SAMPLE_RATE, LogMelConfig, log_mel_windows, rms_db
from symptomfuse.features.keypoints import N_LANDMARKS, keypoint_features
from symptomfuse.features.video import FrameConfig
from symptomfuse.parallel import run_jobs

# Bump when a feature function changes what it computes: every cache entry is then rebuilt.
FEATURES_VERSION = 2


@dataclass(frozen=True)
class CurateConfig:
    window_s: float = 3.0
    hop_s: float = 1.0
    modalities: tuple = ("audio", "video")
    pad_short: bool = False  # pad a recording shorter than one window (audio: silence; video: last frame)
    label_scope: str = "person"  # "person": one label per person (a diagnosis); "recording": may differ
    logmel: LogMelConfig = field(default_factory=LogMelConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)

    def validate(self) -> None:
        if self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError("--window and --hop must be positive")
        if not self.modalities or set(self.modalities) - {"audio", "video"}:
            raise ValueError(f"--modalities must name audio and/or video, got {self.modalities}")
        if self.logmel.frames(int(round(self.window_s * SAMPLE_RATE))) < 1:
            raise ValueError("--window is shorter than one spectrogram frame")
        if "video" in self.modalities and round(self.window_s * self.frames.fps) < 2:
            raise ValueError("--window must hold at least two video frames")

    def settings(self) -> dict:
        """Everything that shapes a cache entry."""
        shaping = {k: v for k, v in asdict(self).items() if k != "label_scope"}
        return {"features_version": FEATURES_VERSION, "sample_rate": SAMPLE_RATE, **shaping}

    @classmethod
    def from_settings(cls, settings: dict) -> "CurateConfig":
        """Rebuild the config from ``settings()`` (as saved in curation.json and in model exports).

        Refuses settings made by a different version of the feature functions, whose features the
        models were not trained on."""
        version = settings.get("features_version")
        if version != FEATURES_VERSION:
            raise ValueError(f"these settings come from features version {version}, but this code computes "
                             f"version {FEATURES_VERSION}: curate, train and export again")
        if settings.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(f"audio features at {settings['sample_rate']} Hz are not supported "
                             f"(only {SAMPLE_RATE} Hz)")
        return cls(window_s=settings["window_s"], hop_s=settings["hop_s"],
                   modalities=tuple(settings["modalities"]), pad_short=settings.get("pad_short", False),
                   logmel=LogMelConfig(**settings["logmel"]), frames=FrameConfig(**settings["frames"]))

    def window_samples(self) -> int:
        return int(round(self.window_s * SAMPLE_RATE))

    def window_frames(self) -> int:
        return int(round(self.window_s * self.frames.fps))


def window_starts(duration_s: float, cfg: CurateConfig) -> np.ndarray:
    """Start times of the windows that fit wholly in ``duration_s``."""
    if duration_s + 1e-9 < cfg.window_s:
        return np.zeros(0)
    n = int(np.floor((duration_s - cfg.window_s) / cfg.hop_s + 1e-9)) + 1
    return np.arange(n) * cfg.hop_s


def load_keypoints(path: Path, n_source_frames: int | None = None) -> np.ndarray:
    """A .npy file of hand landmarks as float32 (frames, 21, 3); with ``n_source_frames``, checks that it
    has one entry per video frame (give or take one). Raises MediaError("bad_keypoints")."""
    try:
        kp = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise MediaError("bad_keypoints", f"keypoint file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise MediaError("bad_keypoints", f"cannot read {path.name} as a NumPy .npy array: {exc}") from exc
    if kp.ndim != 3 or kp.shape[1] != N_LANDMARKS or kp.shape[2] not in (2, 3) or not np.issubdtype(kp.dtype, np.floating):
        raise MediaError("bad_keypoints", f"{path.name} has shape {kp.shape} {kp.dtype}; "
                                          "expected float (frames, 21, 2 or 3)")
    if n_source_frames is not None and abs(len(kp) - n_source_frames) > 1:
        raise MediaError("bad_keypoints", f"{path.name} has {len(kp)} frames but the video has {n_source_frames}")
    if kp.shape[2] == 2:
        kp = np.concatenate([kp, np.zeros(kp.shape[:2] + (1,), kp.dtype)], axis=2)
    return kp.astype(np.float32)


def featurize(c: Candidate, cfg: CurateConfig) -> tuple[dict, dict]:
    """Decode one recording and compute its windows' features. Raises MediaError."""
    dec = decode(c.audio_path, c.video_path, cfg.frames)
    audio, frames, duration = dec.audio, dec.frames, dec.duration_s
    if duration + 1e-9 < cfg.window_s:
        if not cfg.pad_short:
            raise MediaError("too_short", f"{duration:.2f} s of usable media is shorter than one "
                                          f"{cfg.window_s:g} s window (use --window, or --pad-short)")
        if audio is not None:
            audio = np.pad(audio, (0, max(0, cfg.window_samples() - len(audio))))
        if frames is not None:
            frames = np.concatenate([frames, np.repeat(frames[-1:], max(0, cfg.window_frames() - len(frames)), 0)])
        duration = cfg.window_s
    starts = window_starts(duration, cfg)
    arrays: dict[str, np.ndarray] = {}
    meta = {"status": "ok", "duration_s": float(dec.duration_s), "n_windows": int(len(starts)),
            "window_start_s": starts.tolist(), "modalities": [], "source_fps": dec.source_fps}
    if audio is not None:
        n = cfg.window_samples()
        first = np.round(starts * SAMPLE_RATE).astype(np.int64)
        arrays["audio_logmel"] = log_mel_windows(audio, first, n, cfg.logmel)
        meta["audio_rms_db"] = [rms_db(audio[s:s + n]) for s in first]
        meta["modalities"].append("audio")
    if frames is not None:
        arrays["frames"] = frames
        meta["modalities"].append("video")
        if c.keypoints_path is not None:
            src = load_keypoints(c.keypoints_path, dec.source_frames)
            kp = src[np.minimum(dec.source_frame_index, len(src) - 1)]
            if len(kp) < len(frames):  # padded short recording: hold the last landmarks too
                kp = np.concatenate([kp, np.repeat(kp[-1:], len(frames) - len(kp), 0)])
            m = cfg.window_frames()
            aspect = dec.source_size[0] / dec.source_size[1]
            arrays["keypoints"] = kp
            arrays["keypoint_features"] = np.stack([
                keypoint_features(kp[int(round(s * cfg.frames.fps)):][:m], cfg.frames.fps, aspect) for s in starts])
            meta["modalities"].append("keypoints")
    return meta, arrays


def _work(job):
    """Worker: featurize one candidate and store it in the cache (success or failure)."""
    c, cfg, key, cache_root = job
    cache = FeatureCache(cache_root)
    try:
        meta, arrays = featurize(c, cfg)
        cache.put(key, meta, arrays)
    except MediaError as exc:
        meta = {"status": "quarantined", "reason": exc.reason, "detail": exc.detail}
        cache.put(key, meta)
    return c, key, meta


@dataclass
class CurationResult:
    recordings: pd.DataFrame
    windows: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict
    decoded: int  # recordings decoded in this run (0 when everything came from the cache)
    cache_hits: int


def _recording_id(c: Candidate, used: set) -> str:
    path = c.video_path or c.audio_path
    rid = path.stem if path is not None else f"row{c.row}"
    if rid in used:
        rid = f"{rid}_row{c.row}"
    used.add(rid)
    return rid


def curate(
    manifest: Path,
    out: Path,
    cfg: CurateConfig = CurateConfig(),
    columns: Columns = Columns(),
    labels: list[str] | None = None,
    root: Path | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CurationResult:
    cfg.validate()
    manifest, out = Path(manifest), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(cache_dir) if cache_dir else out / "cache"
    cache = FeatureCache(cache_root)
    df = read_manifest(manifest, columns)
    candidates, bad = check_rows(df, Path(root) if root else manifest.parent, columns, labels, cfg.modalities,
                                 cfg.label_scope)
    settings = cfg.settings()

    # File-level checks and content hashes (cheap: no decoding).
    todo, hits, seen_content = [], [], {}
    for c in tqdm(candidates, desc="hash", unit="rec", disable=not progress, leave=False):
        paths = [p for p in dict.fromkeys([c.audio_path, c.video_path]) if p is not None]
        problem = None
        for p in paths:
            if not p.exists():
                problem = ("missing_file", f"file not found: {p}")
            elif p.stat().st_size == 0:
                problem = ("empty_file", f"file is empty (0 bytes): {p}")
            if problem:
                break
        if problem:
            bad.append(Quarantined(c.row, *problem, c.fields))
            continue
        digests = [file_digest(p) for p in paths]
        if tuple(digests) in seen_content:
            bad.append(Quarantined(c.row, "duplicate_content",
                                   f"same bytes as row {seen_content[tuple(digests)]}", c.fields))
            continue
        seen_content[tuple(digests)] = c.row
        kp_digest = None
        if c.keypoints_path is not None and "video" in cfg.modalities:
            kp_digest = file_digest(c.keypoints_path) if c.keypoints_path.is_file() else "missing"
        key = cache_key(digests + [kp_digest or ""], settings)
        meta = cache.meta(key)
        (hits if meta is not None else todo).append((c, key, meta))

    results = list(hits)
    if todo:
        results += run_jobs(_work, [(c, cfg, key, cache_root) for c, key, _ in todo], workers,
                            "decode + features", progress)

    rec_rows, win_rows, used_ids = [], [], set()
    for c, key, meta in sorted(results, key=lambda r: r[0].row):
        if meta["status"] != "ok":
            bad.append(Quarantined(c.row, meta["reason"], meta["detail"], c.fields))
            continue
        rid = _recording_id(c, used_ids)
        rec_rows.append({"recording_id": rid, "row": c.row, "person_id": c.person_id, "label": c.label,
                         "session": c.session, "audio_path": str(c.audio_path or ""),
                         "video_path": str(c.video_path or ""), "keypoints_path": str(c.keypoints_path or ""),
                         "duration_s": meta["duration_s"], "n_windows": meta["n_windows"],
                         "modalities": "+".join(meta["modalities"]), "cache_key": key})
        rms = meta.get("audio_rms_db")
        for w, start in enumerate(meta["window_start_s"]):
            win_rows.append({"recording_id": rid, "person_id": c.person_id, "label": c.label,
                             "session": c.session, "window": w, "start_s": float(start),
                             "end_s": float(start) + cfg.window_s,
                             "audio_rms_db": float(rms[w]) if rms is not None else np.nan})

    recordings = pd.DataFrame(rec_rows, columns=["recording_id", "row", "person_id", "label", "session",
                                                 "audio_path", "video_path", "keypoints_path", "duration_s",
                                                 "n_windows", "modalities", "cache_key"])
    windows = pd.DataFrame(win_rows, columns=["recording_id", "person_id", "label", "session", "window",
                                              "start_s", "end_s", "audio_rms_db"])
    bad.sort(key=lambda q: q.row)
    quarantine = pd.DataFrame([{"row": q.row, "reason": q.reason, "detail": q.detail,
                                **{k: v for k, v in q.fields.items()}} for q in bad])
    if quarantine.empty:
        quarantine = pd.DataFrame(columns=["row", "reason", "detail", *df.columns])
    classes = labels if labels is not None else sorted(recordings["label"].unique().tolist())
    summary = summarize(recordings, windows, quarantine, classes)
    summary["cache"] = {"decoded": len(todo), "hits": len(hits)}

    atomic_write_text(out / "recordings.csv", recordings.to_csv(index=False))
    atomic_write_text(out / "windows.csv", windows.to_csv(index=False))
    atomic_write_text(out / "quarantine.csv", quarantine.to_csv(index=False))
    atomic_write_text(out / "curation.json", json.dumps({
        "manifest": str(manifest.resolve()), "classes": classes, "columns": asdict(columns),
        "cache_dir": str(cache_root.resolve()), "label_scope": cfg.label_scope, "config": settings}, indent=1))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    from symptomfuse.data.summary_plot import plot_summary  # matplotlib only when writing the plot
    plot_summary(recordings, windows, quarantine, classes, out / "summary.png")
    return CurationResult(recordings, windows, quarantine, summary, decoded=len(todo), cache_hits=len(hits))


def summarize(recordings: pd.DataFrame, windows: pd.DataFrame, quarantine: pd.DataFrame, classes: list) -> dict:
    per_class = {}
    for cls in classes:
        r = recordings[recordings["label"] == cls]
        d = r["duration_s"]
        per_class[cls] = {
            "people": int(r["person_id"].nunique()),
            "recordings": int(len(r)),
            "windows": int((windows["label"] == cls).sum()),
            "duration_s": {"total": float(d.sum()), "mean": float(d.mean()) if len(d) else 0.0,
                           "min": float(d.min()) if len(d) else 0.0, "max": float(d.max()) if len(d) else 0.0},
        }
    reasons = quarantine["reason"].value_counts().to_dict() if len(quarantine) else {}
    return {
        "classes": per_class,
        "totals": {"people": int(recordings["person_id"].nunique()), "recordings": int(len(recordings)),
                   "windows": int(len(windows)), "quarantined": int(len(quarantine)),
                   "duration_s": float(recordings["duration_s"].sum())},
        "quarantined_by_reason": {k: int(v) for k, v in sorted(reasons.items())},
        "reason_meanings": {k: REASONS[k] for k in reasons if k in REASONS},
    }


def format_summary(summary: dict) -> str:
    """The printed table: people, recordings, windows and durations per class; quarantine by reason."""
    lines = [f"{'class':<16}{'people':>8}{'recs':>8}{'windows':>9}{'total s':>10}{'mean s':>8}{'min s':>8}{'max s':>8}"]
    lines.append("-" * len(lines[0]))
    for cls, s in summary["classes"].items():
        d = s["duration_s"]
        lines.append(f"{cls:<16}{s['people']:>8}{s['recordings']:>8}{s['windows']:>9}{d['total']:>10.1f}"
                     f"{d['mean']:>8.2f}{d['min']:>8.2f}{d['max']:>8.2f}")
    t = summary["totals"]
    lines.append("-" * len(lines[0]))
    lines.append(f"{'all':<16}{t['people']:>8}{t['recordings']:>8}{t['windows']:>9}{t['duration_s']:>10.1f}")
    lines.append("")
    if summary["quarantined_by_reason"]:
        lines.append(f"quarantined rows: {t['quarantined']}")
        for reason, n in summary["quarantined_by_reason"].items():
            lines.append(f"  {reason:<20}{n:>5}  {REASONS.get(reason, '')}")
    else:
        lines.append("quarantined rows: 0")
    return "\n".join(lines)
