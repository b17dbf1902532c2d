"""Landmarks on real and synthetic footage: found how often, how much they jitter, and whether a known
tremor-like movement comes back out of them.

1. **Real faces** (GRID talking-face clips in ``../shared/data/grid_av_samples``, 25 fps): the share of
   frames in which MediaPipe FaceMesh finds the face, and its time per frame.
2. **A known periodic movement**, injected into that real footage: each frame is shifted sideways by
   A sin(2 pi f t) pixels (sub-pixel, A = 2 px, f = 3-8 Hz). The horizontal position of rigid face points
   (nose bridge, eye corners, forehead: not the moving mouth) is tracked, and the frequency of its
   largest spectral peak between 2.5 and 10 Hz compared with f (goal: within 0.5 Hz). The untouched
   clips show how tall such a peak is without any injected movement (peak over median power).
3. **Jitter on still footage**: one frame of each clip repeated for 3 s with camera-like noise (Gaussian,
   sigma 2 grey levels): the standard deviation of the landmark positions in pixels, raw and after the
   One-Euro filter (``features.landmarks.one_euro``), against the movement injected in 2.
4. **Face measures** (``features.face_measures``: blink rate, eye and mouth opening, smile width and
   its variability, expressivity) of each GRID clip.
5. **Synthetic hands** (the cohort's renders, ``synth``): the share of frames in which MediaPipe Hands
   finds the hand.

Prints tables and writes ``benchmarks/results/landmarks.json``. Needs ``../shared`` for 1-3.

    .venv/bin/python benchmarks/real/landmarks.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from symptomfuse.features.face_measures import face_measures
from symptomfuse.features.landmarks import one_euro, track

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT.parent / "shared" / "data" / "grid_av_samples"
RIGID = [6, 168, 197, 195, 5, 4, 10, 151, 33, 133, 362, 263]  # nose bridge and tip, forehead, eye corners
FPS = 25.0


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def shifted(frames: list[np.ndarray], hz: float, amp_px: float) -> list[np.ndarray]:
    out = []
    for i, f in enumerate(frames):
        dx = amp_px * np.sin(2 * np.pi * hz * i / FPS)
        m = np.float32([[1, 0, dx], [0, 1, 0]])
        out.append(cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return out


def rigid_x(lm: np.ndarray, width: int) -> np.ndarray:
    """Horizontal position (px) of the rigid face points' centre per frame, gaps filled linearly."""
    x = np.nanmean(lm[:, RIGID, 0], axis=1) * width
    ok = np.isfinite(x)
    return np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok]) if ok.any() else x


def peak(x: np.ndarray, lo: float = 2.5, hi: float = 10.0) -> tuple[float, float]:
    """(frequency of the largest peak in [lo, hi] Hz, its power over the median power in 1-12 Hz)."""
    x = x - np.convolve(x, np.ones(9) / 9, mode="same")  # remove slow drift (head pose)
    x = x[4:-4] * np.hanning(len(x) - 8)
    n = 1024
    power = np.abs(np.fft.rfft(x, n)) ** 2
    freq = np.fft.rfftfreq(n, 1 / FPS)
    band = (freq >= lo) & (freq <= hi)
    i = np.flatnonzero(band)[np.argmax(power[band])]
    ref = np.median(power[(freq >= 1) & (freq <= 12)])
    return float(freq[i]), float(power[i] / max(ref, 1e-12))


def synthetic_hands(n_recordings: int, frames_each: int) -> dict:
    from symptomfuse.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        cli(["synth", "--out", str(Path(tmp) / "c"), "--people", str(n_recordings), "--seed", "1",
             "--recordings", "1", "--duration", "6"])
        found, total, per = 0, 0, []
        for path in sorted((Path(tmp) / "c" / "recordings").glob("*.mp4"))[:n_recordings]:
            lm = track(frames_of(path)[:frames_each], "hands")
            ok = np.isfinite(lm[:, 0, 0])
            found, total = found + int(ok.sum()), total + len(ok)
            per.append(float(ok.mean()))
    return {"frames": total, "found": found, "rate": found / max(total, 1), "per_recording": per}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "landmarks.json")
    parser.add_argument("--amplitude", type=float, default=2.0, help="injected movement, pixels")
    args = parser.parse_args()
    result = {}
    if GRID.is_dir():
        clips = sorted(GRID.glob("**/*.mpg"))
        found = total = 0
        seconds = 0.0
        tracks = {}
        for clip in clips:
            frames = frames_of(clip)
            t = time.perf_counter()
            lm = track(frames, "face")
            seconds += time.perf_counter() - t
            ok = np.isfinite(lm[:, 0, 0])
            found, total = found + int(ok.sum()), total + len(ok)
            tracks[clip.name] = (frames, lm)
        result["faces"] = {"clips": len(clips), "frames": total, "found": found, "rate": found / total,
                           "ms_per_frame": 1000 * seconds / total}
        result["face_measures"] = {name: face_measures(lm, FPS, frames[0].shape[1] / frames[0].shape[0])
                                   for name, (frames, lm) in tracks.items()}
        injected, untouched = [], []
        for name, (frames, lm) in list(tracks.items())[:4]:
            width = frames[0].shape[1]
            untouched.append({"clip": name, "peak_ratio": peak(rigid_x(lm, width))[1]})
            for hz in (3.0, 4.5, 6.0, 8.0):
                got, ratio = peak(rigid_x(track(shifted(frames, hz, args.amplitude), "face"), width))
                injected.append({"clip": name, "hz": hz, "found_hz": got, "error_hz": abs(got - hz), "peak_ratio": ratio})
        result["injected"] = injected
        result["untouched"] = untouched
        rng = np.random.default_rng(0)
        jitter_raw, jitter_filtered = [], []
        for name, (frames, _) in list(tracks.items())[:4]:
            still = [np.clip(frames[0] + rng.normal(0, 2, frames[0].shape), 0, 255).astype(np.uint8) for _ in range(75)]
            lm = track(still, "face")[:, :, :2] * np.array([frames[0].shape[1], frames[0].shape[0]])
            jitter_raw.append(float(np.nanmean(np.nanstd(lm, axis=0))))
            jitter_filtered.append(float(np.nanmean(np.nanstd(one_euro(lm, FPS)[10:], axis=0))))
        result["still_jitter_px"] = {"raw": float(np.mean(jitter_raw)), "one_euro": float(np.mean(jitter_filtered))}
    result["synthetic_hands"] = synthetic_hands(10, 50)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    if "faces" in result:
        f = result["faces"]
        print(f"GRID: face found in {f['found']} of {f['frames']} frames ({f['rate']:.1%}) of {f['clips']} clips, "
              f"{f['ms_per_frame']:.1f} ms a frame")
        print(f"\ninjected sideways movement of {args.amplitude} px, recovered from rigid face landmarks:")
        print(f"{'clip':<22}{'injected Hz':>12}{'found Hz':>10}{'error':>8}{'peak ratio':>12}")
        for r in result["injected"]:
            print(f"{r['clip']:<22}{r['hz']:>12.1f}{r['found_hz']:>10.2f}{r['error_hz']:>8.2f}{r['peak_ratio']:>12.1f}")
        print("untouched clips, tallest peak 2.5-10 Hz over median power: "
              + ", ".join(f"{r['clip']} {r['peak_ratio']:.1f}" for r in result["untouched"]))
        fm = result["face_measures"]
        print("\nface measures of the GRID speakers (median over clips; 3 s each): " + ", ".join(
            f"{k} {np.median([v[k] for v in fm.values()]):.3g}" for k in next(iter(fm.values()))))
        j = result["still_jitter_px"]
        print(f"\nstill footage (camera noise only): landmark jitter {j['raw']:.3f} px raw, {j['one_euro']:.3f} px "
              "after the One-Euro filter")
    s = result["synthetic_hands"]
    print(f"\nsynthetic hands: MediaPipe Hands found the hand in {s['found']} of {s['frames']} frames ({s['rate']:.0%})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
