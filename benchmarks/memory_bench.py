"""Peak memory against recording length: curating one long A/V recording, loading it as a data set, and
training on it.

Each step runs in a fresh Python process, which reports its own peak resident set size (``ru_maxrss``:
everything the process held at its fullest, libraries included). Goal: curation's peak stays under
500 MB per worker and does not grow with the recording's length; the data set's inputs are read from
the cache as batches ask for them, so reading every window of a long recording does not hold it either.

The recordings are generated with FFmpeg's test sources (a moving test picture at 320x240 and 25 fps and
a tone at 44.1 kHz, H.264 + AAC): what is measured is memory, not features of a voice or a hand.

    python benchmarks/memory_bench.py [--minutes 1,10,30] [--train-minutes 5]

Prints a table and writes benchmarks/results/memory_bench.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"
PEOPLE = 8  # in the training step, one recording each

CURATE = """
import resource, sys, time
from pathlib import Path
from symptomfuse.data.curate import curate
t0 = time.perf_counter()
res = curate(Path(sys.argv[1]), Path(sys.argv[2]), labels=["healthy", "parkinsons"], workers=1, progress=False)
assert len(res.recordings) == len(res.recordings.dropna()) and res.quarantine.empty, res.quarantine
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, time.perf_counter() - t0, len(res.windows))
"""

READ_ALL = """
import resource, sys, time
import numpy as np
from pathlib import Path
from symptomfuse.data.dataset import load_curated
t0 = time.perf_counter()
ws = load_curated(Path(sys.argv[1]))
order = np.random.default_rng(0).permutation(len(ws.y))  # an epoch's shuffled batches of 32
n = 0
for m in ws.modalities:
    have = order[ws.has(m)[order]]
    for s in range(0, len(have), 32):
        n += len(ws.take(m, have[s:s + 32]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, time.perf_counter() - t0, n)
"""


def make_recording(path: Path, seconds: float) -> None:
    """A moving test picture and a tone, ``seconds`` long."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=180:sample_rate=44100", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True)


def child(script: str, *args: str) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{out.stderr[-3000:]}")
    rss, wall, count = out.stdout.split()[-3:]
    return int(rss), float(wall), int(count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", default="1,10,30", help="recording lengths to curate, in minutes")
    ap.add_argument("--train-minutes", type=float, default=5.0,
                    help="length of each of the 8 people's recordings that a short training run uses (0: skip)")
    ap.add_argument("--prepared-mb", default="2048,32",
                    help="train's --prepared-mb for each training run: the default keeps a fold's prepared inputs in "
                         "memory, a small one makes it prepare each batch from the cache when drawn")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory_bench.json")
    args = ap.parse_args()
    lengths = [float(v) for v in args.minutes.split(",") if v.strip()]
    rows = []
    if not lengths and args.out.exists():  # --minutes "": keep the curation rows of the last run
        rows = [r for r in json.loads(args.out.read_text())["rows"] if not r["step"].startswith("train")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for minutes in lengths:
            media = tmp / f"long_{minutes:g}min.mp4"
            t0 = time.perf_counter()
            make_recording(media, minutes * 60)
            made = time.perf_counter() - t0
            manifest = tmp / f"m_{minutes:g}.csv"
            pd.DataFrame([{"path": media.name, "person_id": "P1", "label": "healthy"}]).to_csv(manifest, index=False)
            out = tmp / f"cur_{minutes:g}"
            rss, wall, windows = child(CURATE, str(manifest), str(out))
            rows.append({"step": "curate (1 worker)", "minutes": minutes, "windows": windows, "peak_rss_mb": rss,
                         "wall_s": round(wall, 1), "media_s_per_s": round(minutes * 60 / wall, 1),
                         "cache_mb": round(sum(f.stat().st_size for f in (out / "cache").rglob("*") if f.is_file()) / 2**20, 1)})
            print(f"curated {minutes:g} min ({made:.0f} s to generate): peak {rss} MB in {wall:.0f} s", flush=True)
            rss, wall, n = child(READ_ALL, str(out))
            rows.append({"step": "read every window (batches of 32)", "minutes": minutes, "windows": n,
                         "peak_rss_mb": rss, "wall_s": round(wall, 1)})
            print(f"read {n} window inputs of {minutes:g} min: peak {rss} MB in {wall:.0f} s", flush=True)
            shutil.rmtree(out)
            media.unlink()
        if args.train_minutes > 0:
            rows += train_steps(tmp, args.train_minutes, [float(v) for v in args.prepared_mb.split(",")])
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    curate_rows = table[table.step.str.startswith("curate")]
    result = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
              "rows": rows, "goal_mb": 500,
              "curate_peak_mb_max": int(curate_rows.peak_rss_mb.max()),
              "curate_peak_growth_mb": int(curate_rows.peak_rss_mb.iloc[-1] - curate_rows.peak_rss_mb.iloc[0])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


def train_steps(tmp: Path, minutes: float, budgets: list[float]) -> list[dict]:
    """``symptomfuse train`` on PEOPLE people with one recording of ``minutes`` each (audio and video, 2
    folds, one epoch), once per ``--prepared-mb``: the peak of its largest process."""
    rows = []
    for i in range(PEOPLE):
        media = tmp / f"person{i}.mp4"
        make_recording(media, minutes * 60 + i)  # different lengths: different bytes
        rows.append({"path": media.name, "person_id": f"P{i}", "label": ["healthy", "parkinsons"][i % 2]})
    pd.DataFrame(rows).to_csv(tmp / "train.csv", index=False)
    cli = [sys.executable, "-m", "symptomfuse.cli"]
    subprocess.run([*cli, "curate", str(tmp / "train.csv"), "--out", str(tmp / "tc"), "--labels", "healthy,parkinsons",
                    "--workers", "1"], check=True, capture_output=True)
    windows = len(pd.read_csv(tmp / "tc" / "windows.csv"))
    script = ("import resource, subprocess, sys, time; t0 = time.perf_counter(); "
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "sys.exit(p.stderr[-3000:]) if p.returncode else None; "
              "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024; print(r, time.perf_counter() - t0, 0)")
    out = []
    for budget in budgets:
        rss, wall, _ = child(script, *cli, "train", str(tmp / "tc"), "--out", str(tmp / f"tr{budget:g}"), "--folds", "2",
                             "--epochs", "1", "--fusion-epochs", "1", "--fusions", "gated", "--late", "",
                             "--baselines", "", "--workers", "1", "--prepared-mb", str(budget))
        out.append({"step": f"train ({PEOPLE} people x {minutes:g} min, 2 folds, 1 epoch, --prepared-mb {budget:g})",
                    "minutes": minutes * PEOPLE, "windows": windows, "peak_rss_mb": rss, "wall_s": round(wall, 1)})
        print(f"trained with --prepared-mb {budget:g}: peak {rss} MB in {wall:.0f} s", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
