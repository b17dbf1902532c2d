"""One recording (or table row) -> its windows' features in the feature cache: the work curation hands to
each worker process or Ray task (``featurize_job``).

This module and what it imports leave pandas out: a spawned worker imports it before its first job, and
pandas alone takes about half a second to import, which a curation of a few dozen recordings on 2 workers
would otherwise pay in wall time (``benchmarks/curate_bench.py``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from symptomfuse.contract import FeatureContract
from symptomfuse.data.cache import CacheEntry, FeatureCache
from symptomfuse.data.candidate import Candidate
from symptomfuse.data.media import MediaError, decode
from symptomfuse.features.video import FrameConfig
from symptomfuse.modalities import SourceMedia

# Windows are featurized a run at a time, each run starting within this many seconds of media: what a
# worker holds does not grow with a recording's length (a log-mel of 60 s passes through about 60 MB).
SECONDS_PER_RUN = 60.0


def featurize(c: Candidate, contract: FeatureContract, entry: CacheEntry, scratch: Path) -> dict:
    """Decode one recording (or take a table row), compute its windows' features a run of windows at a
    time and write them into the cache ``entry``; returns its JSON record. The decoded media goes to files
    under ``scratch`` and is read back a window at a time. Raises MediaError."""
    mods = [contract.modality(m) for m in c.modalities]
    timing = contract.timing
    if c.table_row is not None:
        starts = np.zeros(1)
        media = SourceMedia(None, None, None, 0, None, {}, c.table_row)
        duration, source_fps = 0.0, None
    else:
        needs = {s for m in mods for s in m.needs}
        hooks = dict(hook for m in mods if (hook := m.source_frame_hook()) is not None)  # one per key
        dec = decode(c.audio_path if "audio" in needs else None, c.video_path if "video" in needs else None,
                     scratch, contract.frame_config() or FrameConfig(fps=timing.fps), hooks)
        audio, frames, duration = dec.audio, dec.frames, dec.duration_s
        if duration + 1e-9 < timing.window_s:
            if not contract.pad_short:
                raise MediaError("too_short", f"{duration:.2f} s of usable media is shorter than one "
                                              f"{timing.window_s:g} s window (use --window, or --pad-short)")
            # shorter than one window: small enough to pad in memory
            if audio is not None:
                audio = np.pad(audio[:], (0, max(0, timing.window_samples() - len(audio))))
            if frames is not None:
                frames = frames[:]
                frames = np.concatenate([frames, np.repeat(frames[-1:], max(0, timing.window_frames() - len(frames)), 0)])
            duration = timing.window_s
        starts = timing.starts(duration)
        media = SourceMedia(audio, frames, dec.source_frame_index, dec.source_frames, dec.source_size, c.files,
                            per_source_frame=dec.per_source_frame)
        duration, source_fps = dec.duration_s, dec.source_fps
    meta = {"status": "ok", "duration_s": float(duration), "n_windows": int(len(starts)),
            "window_start_s": starts.tolist(), "modalities": [m.name for m in mods], "source_fps": source_fps,
            "summaries": {}, "quality": {}}
    for m in mods:
        for name, array in m.track(media).items():
            entry.put(name, array)
    per_run = max(1, int(SECONDS_PER_RUN // timing.hop_s))
    for a in range(0, len(starts), per_run):
        run = starts[a:a + per_run]
        for m in mods:
            arrays = m.extract(media, run)
            for name, rows in arrays.items():
                if len(rows) != len(run):
                    raise ValueError(f"modality {m.name}: extract gave {len(rows)} rows of {name!r} for "
                                     f"{len(run)} windows")
                entry.append(name, rows, total=len(starts))
            for name, values in m.summaries(arrays, run).items():
                meta["summaries"].setdefault(name, []).extend(values)
        if c.table_row is None:
            for name, values in window_gates(media, run, timing).items():
                meta["quality"].setdefault(name, []).extend(values)
    return meta


def window_gates(media: SourceMedia, starts: np.ndarray, timing) -> dict[str, list[str]]:
    """The live engine's quality gates (``stream.quality``) on every window of each decoded stream: "ok",
    or why not (silence, no voice; a dark or frozen picture). Curation counts them and can drop them
    (``--drop-gated``), so that a model never learns silence or a dark screen as a class."""
    from symptomfuse.stream.quality import audio_quality, video_quality

    out = {}
    if media.audio is not None:
        n = timing.window_samples()
        first = np.round(starts * timing.sample_rate).astype(np.int64)
        out["audio"] = [audio_quality(media.audio[a:a + n]) for a in first]
    if media.frames is not None:
        m = timing.window_frames()
        first = np.round(starts * timing.fps).astype(np.int64)
        out["video"] = [video_quality(media.frames[f:f + m]) for f in first]
    return out


@lru_cache(maxsize=1)
def _blas():
    """This process's BLAS libraries, found once (finding them costs about 10 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def featurize_job(job):
    """Worker: featurize one candidate and store it in the cache (success or failure). BLAS runs on one
    thread, so the features are the same to the bit in this process, a local worker or a Ray task (a
    matrix product's rounding depends on its thread count); one recording per core is the parallelism."""
    c, contract, key, cache_root = job
    cache = FeatureCache(cache_root)
    try:
        with _blas().limit(limits=1), cache.scratch() as scratch, cache.entry(key) as entry:
            meta = featurize(c, contract, entry, Path(scratch))
            entry.commit(meta)
    except MediaError as exc:
        meta = {"status": "quarantined", "reason": exc.reason, "detail": exc.detail}
        cache.put(key, meta)
    return c, key, meta
