"""UCI Parkinsons (Little et al. 2007) as a feature-table modality, evaluated like a paper would be.

One run does everything, with settings fixed before looking at any result (the package defaults; nothing
is tuned on test people):

1. curate the table: person = the ``phon_R01_Sxx`` prefix of ``name``, label = ``status`` (1 = Parkinson's);
2. person-grouped cross-validation (4 folds: there are only 8 healthy people) of symptomfuse's ``mlp``
   network and the scikit-learn baselines (logistic regression, random forest, gradient boosting), all on
   the same folds, evaluated per person with 95% bootstrap intervals over people;
3. the same, repeated with 5 different fold seeds, to show how much one split's figure can move;
4. the record-wise split (recordings of one person on both sides), which the leak check refuses unless
   ``--allow-leaky-split`` is given: it shows how much such a leak inflates the figures.

Prints a table and writes ``benchmarks/results/uci_parkinsons.json``.

    .venv/bin/python benchmarks/real/uci_parkinsons.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from symptomfuse.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "data" / "uci_parkinsons" / "parkinsons.csv"
MODELS = ("voice_only", "lr_voice", "rf_voice", "gb_voice")


def quiet(args: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli(args)
    if code != 0:
        raise SystemExit(f"symptomfuse {' '.join(args)} exited with {code}")


def train_eval(curated: Path, run: Path, seed: int, extra: list[str] = ()) -> dict:
    quiet(["train", str(curated), "--out", str(run), "--folds", "4", "--epochs", "60", "--patience", "10",
           "--seed", str(seed), *extra])
    quiet(["evaluate", str(run), "--bootstrap", "1000"])
    return json.loads((run / "metrics.json").read_text())


def row(metrics: dict, name: str, level: str) -> dict:
    e = metrics["models"][name][level]
    return {"auc": e["roc_auc"], "auc_ci": e["roc_auc_ci"], "balanced_accuracy": e["balanced_accuracy"],
            "balanced_accuracy_ci": e["balanced_accuracy_ci"], "accuracy": e["accuracy"], "ece": e["ece"],
            "people": e["people"], "n": e["n"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "uci_parkinsons.json")
    parser.add_argument("--seeds", type=int, default=5, help="fold seeds for the repeated cross-validation")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quiet(["curate", "--table", f"voice={TABLE}", "--out", str(tmp / "cur"), "--person-col", "name",
               "--person-pattern", r"(phon_R01_S\d+)", "--label-col", "status", "--positive", "1"])
        first = train_eval(tmp / "cur", tmp / "run0", 0)
        repeated = {m: [row(first, m, "person")["auc"]] for m in MODELS}
        for seed in range(1, args.seeds):
            metrics = train_eval(tmp / "cur", tmp / f"run{seed}", seed)
            for m in MODELS:
                repeated[m].append(row(metrics, m, "person")["auc"])
        # the leak check refuses a record-wise split unless told; then it runs, marked leaky
        with contextlib.redirect_stderr(io.StringIO()):
            refused = cli(["train", str(tmp / "cur"), "--out", str(tmp / "leaky"), "--split", "record"]) == 2
        leaky = train_eval(tmp / "cur", tmp / "leaky", 0, ["--split", "record", "--allow-leaky-split"])
    result = {
        "data": "UCI Parkinsons, 195 recordings, 32 recording-subject codes (24 PD, 8 healthy)",
        "protocol": "4-fold cross-validation grouped by person (seed 0), 95% bootstrap intervals over people; "
                    "package defaults, nothing tuned on test people",
        "person_split": {m: row(first, m, "person") for m in MODELS},
        "repeated_person_auc": {m: {"seeds": list(range(args.seeds)), "auc": v, "mean": float(np.mean(v)),
                                    "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                                for m, v in repeated.items()},
        "record_split_refused_without_flag": refused,
        "leaky_record_split": {m: row(leaky, m, "recording") for m in MODELS},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"UCI Parkinsons: {result['data']}\n{result['protocol']}\n")
    print(f"{'model':<12} {'person AUC [95% CI]':<24} {'bal. acc [95% CI]':<24} {'people':>6} "
          f"{'AUC over 5 seeds':>18} {'leaky: rec. acc / AUC':>22}")
    for m in MODELS:
        p, r, lk = result["person_split"][m], result["repeated_person_auc"][m], result["leaky_record_split"][m]
        print(f"{m:<12} {p['auc']:.3f} [{p['auc_ci'][0]:.3f}-{p['auc_ci'][1]:.3f}]    "
              f"{p['balanced_accuracy']:.3f} [{p['balanced_accuracy_ci'][0]:.3f}-{p['balanced_accuracy_ci'][1]:.3f}]    "
              f"{p['people']:>6} {r['mean']:>10.3f} +- {r['sd']:.3f} {lk['accuracy']:>13.3f} / {lk['auc']:.3f}")
    print(f"\nrecord-wise split refused without --allow-leaky-split: {refused}")
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
