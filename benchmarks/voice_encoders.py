"""Three ways to read a voice, on the same folds: the log-mel CNN trained from scratch (``audio``), the
clinical voice measures (``voice``: jitter, shimmer, HNR, RPDE, DFA, PPE, MFCC statistics) and the
pretrained GE2E embedding, frozen, with a small head (``ge2e``), each beside logistic regression on the
same inputs.

- Synthetic cohort (48 people, sustained vowels): diagnosis per person, 5 folds by person.
- FSDD (real speech: 6 speakers say the digits 0-9): which digit, per recording, 6 folds by speaker
  (each fold holds out one speaker, so the models must generalise to a new voice).

One curation with the three modalities and one training run per data set, so that every model sees the
same windows and folds. Prints a table and writes ``benchmarks/results/voice_encoders.json``.

    .venv/bin/python benchmarks/voice_encoders.py [--people 48]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODS = "audio,voice_measures,ge2e"


def quiet(args: list[str]) -> None:
    """One symptomfuse command in a fresh process (each step starts clean: no threads or memory carried
    over from the training before it)."""
    done = subprocess.run([sys.executable, "-m", "symptomfuse.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"symptomfuse {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-2000:]}")


def table(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    top = metrics["top_level"]
    return {"level": top, "people": metrics["protocol"]["people"], "folds": metrics["protocol"]["folds"],
            "models": {n: {k: e[top][k] for k in ("roc_auc", "roc_auc_ci", "balanced_accuracy", "accuracy")}
                       for n, e in metrics["models"].items()},
            "seconds_per_model_fold": {n: round(sum(f["seconds"] for f in m["folds"]) / len(m["folds"]), 2)
                                       for n, m in json.loads((run / "run.json").read_text())["models"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=48)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "voice_encoders.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quiet(["synth", "--out", str(tmp / "cohort"), "--people", str(args.people), "--seed", "0"])
        t = time.perf_counter()
        quiet(["curate", str(tmp / "cohort" / "manifest.csv"), "--out", str(tmp / "cur"), "--modalities", MODS,
               "--labels", "healthy,parkinsons"])
        curate_s = time.perf_counter() - t
        quiet(["train", str(tmp / "cur"), "--out", str(tmp / "run"), "--modalities", MODS, "--fusion-modalities", "",
               "--epochs", "15", "--patience", "5", "--baselines", "lr"])
        quiet(["evaluate", str(tmp / "run"), "--bootstrap", "500"])
        result["synthetic"] = {**table(tmp / "run"), "curate_seconds": round(curate_s, 1)}
        t = time.perf_counter()
        quiet(["curate", str(ROOT / "data" / "fsdd" / "manifest.csv"), "--out", str(tmp / "fcur"), "--modalities",
               MODS, "--window", "1.0", "--hop", "0.5", "--pad-short", "--label-scope", "recording"])
        curate_s = time.perf_counter() - t
        quiet(["train", str(tmp / "fcur"), "--out", str(tmp / "frun"), "--modalities", MODS, "--fusion-modalities",
               "", "--folds", "6", "--epochs", "25", "--patience", "5", "--encoder-args",
               '{"audio": {"peak_norm": true}}', "--baselines", "lr"])
        quiet(["evaluate", str(tmp / "frun"), "--bootstrap", "500"])
        result["fsdd"] = {**table(tmp / "frun"), "curate_seconds": round(curate_s, 1)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name, what in (("synthetic", "diagnosis per person, AUROC"), ("fsdd", "digit per recording, balanced accuracy")):
        r = result[name]
        print(f"\n{name}: {what} ({r['people']} people, {r['folds']} folds by person; curation of the three "
              f"modalities {r['curate_seconds']} s)")
        print(f"{'model':<14}{'AUROC [95% CI]':<24}{'bal. acc':>9}{'accuracy':>10}{'s / model-fold':>16}")
        for n, m in sorted(r["models"].items(), key=lambda kv: -kv[1]["balanced_accuracy"]):
            print(f"{n:<14}{m['roc_auc']:.3f} [{m['roc_auc_ci'][0]:.3f}-{m['roc_auc_ci'][1]:.3f}]    "
                  f"{m['balanced_accuracy']:>9.3f}{m['accuracy']:>10.3f}{r['seconds_per_model_fold'].get(n, 0):>16}")
    print(f"\nwrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
