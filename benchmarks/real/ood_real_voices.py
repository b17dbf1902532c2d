"""Does the demo's model know what it does not know? Real voices through a model of synthetic people.

The demo (``make demo``) trains on the synthetic cohort only. Handed the four real sustained /a/
recordings in ``../shared/data/pd_voice_samples`` (2 with Parkinson's, 2 healthy; Iyer et al. 2023), its
audio model still gives a probability, and without a check it gave 0.99 for both healthy controls.
This streams each real recording, and for contrast two recordings of held-out synthetic test people,
through the exported model (``demo_out/model``) with the live engine, and reports per recording: the
windows whose voice passed the gate, the share the audio model's embedding density flags as unlike the
training data, the median distance / threshold, the audio model's mean p, and how often the fused
result abstains.

Prints a table and writes ``benchmarks/results/ood_real_voices.json``.

    make demo && .venv/bin/python benchmarks/real/ood_real_voices.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from symptomfuse.stream.detector import Detector
from symptomfuse.stream.engine import StreamEngine
from symptomfuse.stream.sources import replay_file

ROOT = Path(__file__).resolve().parents[2]
VOICES = ROOT.parent / "shared" / "data" / "pd_voice_samples"


def stream(det: Detector, path: Path, modality: str) -> dict:
    events = list(replay_file(StreamEngine(det, update_every=0.5, smooth=1), path))
    ok = [e for e in events if e["modalities"][modality]["quality"] == "ok"]
    scores = [e["modalities"][modality].get("ood") for e in ok]
    scores = [s for s in scores if s is not None]
    return {"windows": len(events), "voiced_windows": len(ok),
            "flagged": float(np.mean([s > 1 for s in scores])) if scores else None,
            "median_ood": float(np.median(scores)) if scores else None,
            "mean_p": float(np.mean([e["modalities"][modality]["p"] for e in ok])) if ok else None,
            "fused_abstains": float(np.mean([e["fused"]["abstain"] for e in events])) if events else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model", help="an export folder")
    parser.add_argument("--cohort", type=Path, default=ROOT / "demo_out" / "cohort", help="the synthetic cohort")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ood_real_voices.json")
    args = parser.parse_args()
    if not VOICES.is_dir():
        raise SystemExit(f"{VOICES} is missing: these real recordings are not shipped with the project")
    det = Detector.load(args.model, "torch")
    spec = json.loads((args.model / "export.json").read_text())
    rows = {}
    for path in sorted(VOICES.glob("*/*.wav")):
        rows[f"real {path.parent.name} {path.stem[:12]}"] = stream(det, path, "audio")
    test_people = spec["source"].get("test_people", [])
    controls = [p for p in sorted((args.cohort / "recordings").glob("*.mp4")) if p.stem.split("_")[0] in test_people][:2]
    for path in controls:
        rows[f"synthetic test {path.stem}"] = stream(det, path, "audio")
    result = {"model": str(args.model), "positive": spec.get("positive_class"), "recordings": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{'recording':<36}{'voiced windows':>15}{'flagged':>9}{'median ood':>11}{'mean p(audio)':>14}{'fused abstains':>15}")
    for name, r in rows.items():
        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        print(f"{name:<36}{r['voiced_windows']:>15}{f(r['flagged'], '.0%'):>9}{f(r['median_ood'], '.1f'):>11}"
              f"{f(r['mean_p'], '.2f'):>14}{f(r['fused_abstains'], '.0%'):>15}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
