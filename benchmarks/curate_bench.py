"""Curation throughput beside PyAV decode-only throughput on the same files.

Both are measured in media seconds per wall second, in one process and with one process per core.
Decode-only demuxes and decodes every audio and video frame and converts nothing; curation does
everything ``symptomfuse curate`` does for a recording that is not cached (hash, decode, resample,
window, features, write the cache entry). Goal: curation at least half as fast as decoding alone.

    python benchmarks/curate_bench.py [--cohort DIR] [--people 12] [--workers 2]

Prints a table and writes benchmarks/results/curate_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import pandas as pd

from symptomfuse.data.curate import curate
from symptomfuse.data.media import probe_duration
from symptomfuse.synth.cohort import SynthConfig, synthesize


def decode_only(path: str) -> int:
    frames = 0
    with av.open(path) as c:
        for _ in c.decode(*c.streams):
            frames += 1
    return frames


def _timed_decode(paths: list[str], workers: int) -> float:
    t0 = time.perf_counter()
    if workers <= 1:
        for p in paths:
            decode_only(p)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(decode_only, paths))
    return time.perf_counter() - t0


def _timed_curate(manifest: Path, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = curate(manifest, Path(out), labels=["healthy", "parkinsons"], workers=workers, progress=False)
        elapsed = time.perf_counter() - t0
        assert res.decoded == len(res.recordings), "the benchmark must not hit a cache"
    return elapsed


def _timed_landmarks(cohort: Path, rows: pd.DataFrame, out: Path) -> dict:
    """Hand landmarks of the same recordings two ways: MediaPipe Hands alone on PyAV's decoded frames at
    full size (the floor), and ``curate --modalities keypoints --hand-landmarks mediapipe``, one process."""
    from symptomfuse.contract import FeatureContract
    from symptomfuse.features.landmarks import track

    paths = [str((cohort / p).resolve()) for p in rows.path]
    t0 = time.perf_counter()
    frames = 0
    for p in paths:
        with av.open(p) as c:
            images = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        frames += len(images)
        track(images, "hands")
    alone = time.perf_counter() - t0
    manifest = out / "landmarks.csv"
    rows.assign(path=paths)[["path", "person_id", "label"]].to_csv(manifest, index=False)
    contract = FeatureContract.build(["keypoints"], settings={"keypoints": {"source": "mediapipe"}})
    t0 = time.perf_counter()
    res = curate(manifest, out / "landmarks_curated", contract, labels=["healthy", "parkinsons"], workers=1,
                 progress=False)
    curated = time.perf_counter() - t0
    assert res.decoded == len(paths), "the benchmark must not hit a cache"
    return {"recordings": len(paths), "frames": frames, "mediapipe_alone_s": round(alone, 2),
            "curate_s": round(curated, 2), "mediapipe_ms_per_frame": round(1000 * alone / frames, 2),
            "ratio": round(alone / curated, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", type=Path, default=None, help="an existing cohort (default: synthesize one)")
    ap.add_argument("--people", type=int, default=12, help="people to synthesize when no --cohort")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is kept")
    ap.add_argument("--landmarks", type=int, default=0, metavar="N",
                    help="also time hand-landmark curation on N recordings against MediaPipe alone (0: skip)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "curate_bench.json")
    args = ap.parse_args()

    tmp = None
    cohort = args.cohort
    if cohort is None:
        tmp = Path(tempfile.mkdtemp(prefix="curate_bench_"))
        cohort = tmp / "cohort"
        print(f"synthesizing {args.people} people into {cohort} ...", file=sys.stderr)
        synthesize(SynthConfig(people=args.people, seed=0), cohort, progress=False)
    manifest = cohort / "manifest.csv"
    paths = [str(cohort / p) for p in pd.read_csv(manifest).path]
    media_s = sum(probe_duration(Path(p)) for p in paths)

    rows = []
    for workers in sorted({1, args.workers}):
        dec = min(_timed_decode(paths, workers) for _ in range(args.repeats))
        cur = min(_timed_curate(manifest, workers) for _ in range(args.repeats))
        rows.append({"workers": workers, "recordings": len(paths), "media_s": round(media_s, 1),
                     "decode_only_media_s_per_s": round(media_s / dec, 1),
                     "curate_media_s_per_s": round(media_s / cur, 1),
                     "ratio": round(dec / cur, 3)})

    header = f"{'workers':>8}{'recs':>6}{'media s':>9}{'decode-only x':>15}{'curate x':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['workers']:>8}{r['recordings']:>6}{r['media_s']:>9}{r['decode_only_media_s_per_s']:>15}"
              f"{r['curate_media_s_per_s']:>10}{r['ratio']:>8}")
    print("(x = media seconds per wall second; ratio = curate / decode-only, goal >= 0.5)")
    landmarks = None
    if args.landmarks:
        with tempfile.TemporaryDirectory() as work:
            landmarks = _timed_landmarks(cohort, pd.read_csv(manifest).head(args.landmarks), Path(work))
        print(f"hand landmarks, {landmarks['recordings']} recordings ({landmarks['frames']} frames): MediaPipe alone "
              f"{landmarks['mediapipe_alone_s']} s ({landmarks['mediapipe_ms_per_frame']} ms a frame), curation "
              f"{landmarks['curate_s']} s; ratio {landmarks['ratio']}")
    result = {"benchmark": "curate", "goal_ratio": 0.5, "rows": rows, "landmarks": landmarks, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "pyav": av.__version__,
        "platform": platform.platform()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
