"""UFNet's speech and smile features of real people, under UFNet's own protocol (AAAI 2025).

The paper's split by person: training people, **dev** people (every choice is made on them: early
stopping, late-fusion weights), **calib** people (temperature scaling), **test** people (scored once per
committed configuration). Settings are the package defaults, fixed before looking at any test figure;
the dev figures printed first are what a choice would be made on.

Models: smile alone, speech alone (classical voice measures: not the WavLM embeddings UFNet's speech model
used), speech + smile with every intermediate and late fusion, fused per person (``--unit person``;
a person missing a task is scored from the other, masked), and the scikit-learn baselines on the same
people. Scored on every test person with any task, and separately on those with both.

Prints both tables and writes ``benchmarks/results/ufnet.json``; the curated set and the run folder (with
its ``report.html``, predictions and per-person contributions) stay in ``benchmarks/results/real/ufnet/``.

    .venv/bin/python benchmarks/real/ufnet.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from symptomfuse.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "ufnet"
SPEECH = ["f0m", "f0j", "f0jr", "ash", "ashr", *[f"cepm{i}" for i in range(13)], *[f"cepj{i}" for i in range(13)],
          "Hnorm", "alpha", "ppe", *[f"relbandpower{i}" for i in range(4)], "f0std"]
PUBLISHED = {"speech (WavLM)": 0.885, "speech + smile": 0.919, "speech + smile + finger tapping": 0.928}


def quiet(args: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli(args)
    if code != 0:
        raise SystemExit(f"symptomfuse {' '.join(args)} exited with {code}")


def split_file(path: Path) -> Path:
    rows = [{"person_id": p.strip(), "split": split} for split in ("dev", "test", "calib")
            for p in (DATA / f"{split}_set_participants.txt").read_text().split() if p.strip()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ufnet.json")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "real" / "ufnet",
                        help="where the curated set (cur/) and the run folder (run/) go, replacing earlier ones")
    args = parser.parse_args()
    t0 = time.perf_counter()
    work = args.work
    for sub in ("cur", "run"):  # one run per folder: never a mix of two
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    quiet(["curate", "--table", f"speech={DATA / 'classical_fox_features.csv'}::cols:{','.join(SPEECH)}",
           "--table", f"smile={DATA / 'facial_dataset.csv'}::prefix:smile_", "--out", str(work / "cur"),
           "--person-col", "Participant_ID", "--label-col", "pd", "--label-map", "1.0=pd,0.0=no_pd,yes=pd,no=no_pd",
           "--labels", "no_pd,pd"])
    quiet(["train", str(work / "cur"), "--out", str(work / "run"), "--unit", "person",
           "--split-file", str(split_file(work / "split.csv"))])
    quiet(["evaluate", str(work / "run"), "--bootstrap", "1000", "--importance", "--mc-dropout", "20", "--subgroups",
           str(DATA / "demography_details.csv"), "--subgroup-person-col", "id", "--subgroup-cols", "Sex,Age"])
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    summary = json.loads((work / "cur" / "summary.json").read_text())
    rows = {}
    for name, e in metrics["models"].items():
        p = e["person"]
        both = e.get("complete", {}).get("person", p)
        rows[name] = {"test_auc": p["roc_auc"], "test_auc_ci": p["roc_auc_ci"], "accuracy": p["accuracy"],
                      "sensitivity": p["sensitivity"], "specificity": p["specificity"], "ece": p["ece"],
                      "ece_ci": p["ece_ci"], "people": p["people"], "both_auc": both["roc_auc"],
                      "both_auc_ci": both["roc_auc_ci"], "both_people": both["people"],
                      "dev_auc": metrics.get("dev", {}).get(name, {}).get("roc_auc"),
                      "conformal": e.get("conformal"), "accuracy_coverage": e.get("accuracy_coverage"),
                      "subgroups": e.get("subgroups"), "contributions": e.get("contributions"),
                      "stratified_auc": e.get("stratified_auc"), "mc_dropout": metrics.get("mc_dropout", {}).get(name)}
    result = {"protocol": "UFNet's person split: train / dev (choices) / calib (temperature) / test (scored once); "
                          "package defaults; unit person; 95% bootstrap intervals over test people",
              "split_people": metrics["protocol"]["split_people"], "curated": summary["modalities"],
              "test_samples": metrics["samples"], "test_with_both": metrics["complete_samples"],
              "published_test_auroc": PUBLISHED, "models": rows, "age_alone": metrics.get("attribute_auc"),
              "feature_importance": metrics.get("feature_importance"), "run_folder": str(work / "run"),
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"UFNet protocol: people per split {result['split_people']}; test people with any task "
          f"{result['test_samples']}, with both {result['test_with_both']}\n")
    print(f"{'model':<18}{'dev AUC':>8}  {'test AUC [95% CI]':<22}{'acc':>6}{'sens':>6}{'spec':>6}{'ECE':>6}"
          f"{'people':>7}  {'both tasks: AUC [95% CI]':<26}{'people':>7}")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_auc"]):
        dev = f"{r['dev_auc']:.3f}" if r["dev_auc"] is not None else "-"
        print(f"{name:<18}{dev:>8}  {r['test_auc']:.3f} [{r['test_auc_ci'][0]:.3f}-{r['test_auc_ci'][1]:.3f}]  "
              f"{r['accuracy']:>6.3f}{r['sensitivity']:>6.3f}{r['specificity']:>6.3f}{r['ece']:>6.3f}{r['people']:>7}  "
              f"{r['both_auc']:.3f} [{r['both_auc_ci'][0]:.3f}-{r['both_auc_ci'][1]:.3f}]{'':>6}{r['both_people']:>7}")
    print("\nconformal prediction sets calibrated on calib people: coverage on test people at nominal 90% / 95% "
          "[where any exchangeable method's falls 95% of the time with these numbers of calib and test people] "
          "(the same sets on dev people), and accuracy withholding the least certain 2% / 10% / 20%:")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_auc"]):
        if r["conformal"]:
            acc = {x["coverage"]: x["accuracy"] for x in r["accuracy_coverage"]}
            cov = " / ".join(f"{c['coverage']:.3f} [{c['expected_range'][0]:.2f}-{c['expected_range'][1]:.2f}] (dev "
                             f"{c.get('dev_coverage', float('nan')):.3f})" for c in r["conformal"])
            print(f"  {name:<18} {cov};  accuracy {acc[1.0]:.3f} -> {acc[0.98]:.3f} / {acc[0.9]:.3f} / {acc[0.8]:.3f}")
    print(f"\nfor whom it fails (test people by sex and age band; demographics known for some; AUC [95% CI], people):"
          f"\n  age alone as a score: {result['age_alone']}")
    for name in ("smile_only", "speech_only", max((n for n in rows if n.startswith("fused_")),
                                                  key=lambda n: rows[n]["dev_auc"] or 0)):
        cells = [f"{c['attribute'].lower()} {c['group']}: " + (f"{c['roc_auc']:.2f} [{c['roc_auc_ci'][0]:.2f}-"
                 f"{c['roc_auc_ci'][1]:.2f}]" if "roc_auc" in c else "-") + f" ({c['people']})"
                 for c in rows[name]["subgroups"] or []]
        print(f"  {name:<18} " + ";  ".join(cells))
    print("  how much could age explain: AUC comparing only people in the same age band, against the plain AUC on "
          "the same people")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_auc"]):
        a = (r["stratified_auc"] or {}).get("Age")
        if a:
            print(f"  {name:<18} within age bands {a['roc_auc']:.3f}, plain {a['roc_auc_same_people']:.3f} "
                  f"({a['people']} people)")
    print("\nMC dropout (20 passes): accuracy withholding the people with the largest spread (100% / 90% / 80%):")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_auc"]):
        if r["mc_dropout"]:
            acc = {c["coverage"]: c["accuracy"] for c in r["mc_dropout"]["accuracy_coverage"]}
            print(f"  {name:<18} spread {r['mc_dropout']['mean_spread']:.3f}; accuracy {acc[1.0]:.3f} / "
                  f"{acc[0.9]:.3f} / {acc[0.8]:.3f}")
    print("\nwhy: features that matter most on test people (AUC drop when shuffled):")
    for m, imp in (result["feature_importance"] or {}).items():
        print(f"  {m:<8} " + ", ".join(f"{t['feature']} {t['auc_drop']:+.3f}" for t in imp["top"][:6]))
    print("  modality contributions to the fused predictions (mean |change in p| when removed; share of people "
          "it moves most):")
    for name in sorted(n for n in rows if rows[n]["contributions"]):
        print(f"  {name:<18} " + ", ".join(f"{m} {c['mean_abs']:.3f} ({c['share_largest']:.0%})"
                                           for m, c in rows[name]["contributions"].items()))
    print(f"\npublished (UFNet, test): {PUBLISHED}\nwrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
