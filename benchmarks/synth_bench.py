"""How long `symptomfuse synth` takes for the default cohort (goal: 48 people in under 2 minutes on 2 cores).

    python benchmarks/synth_bench.py [--people 48] [--workers 2]

Prints a table and writes benchmarks/results/synth_bench.json.
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
from pathlib import Path

from symptomfuse.synth.cohort import SynthConfig, synthesize


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=48)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth_bench.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="synth_bench_"))
    try:
        cfg = SynthConfig(people=args.people, seed=0)
        t0 = time.perf_counter()
        manifest = synthesize(cfg, tmp, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in tmp.rglob("*.mp4")) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    media_s = len(manifest) * cfg.duration_s
    row = {"people": args.people, "recordings": len(manifest), "workers": args.workers, "wall_s": round(wall, 1),
           "media_s_per_wall_s": round(media_s / wall, 2), "mp4_mb": round(size_mb, 1), "goal_wall_s": 120}
    print(f"{'people':>7}{'recs':>6}{'workers':>9}{'wall s':>8}{'media x':>9}{'MP4 MB':>8}   goal: < 120 s")
    print(f"{row['people']:>7}{row['recordings']:>6}{row['workers']:>9}{row['wall_s']:>8}"
          f"{row['media_s_per_wall_s']:>9}{row['mp4_mb']:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "synth", "rows": [row], "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
