"""Hand measures of the synthetic cohort against the generator's truth and against real people.

Each synthetic recording rests the hand first and taps after ``rest_until_s`` (in its ``.json``). From
its ground-truth landmarks (``.keypoints.npy``) this computes the rest-tremor measures on the rest part
and the finger-tapping measures on the tapping part (``features.hand_kinematics``), then:

- against the truth: the generator's rest-tremor frequency (people with movement signs) against the
  measured tremor frequency; the generator's tapping rate and decrement against the measured ones
  (Spearman);
- against real people: where the synthetic tapping measures fall in the distribution of the same-named
  measures of the 489 real finger-tapping videos (``data/finger_tapping``, Islam et al. 2023): the share
  of synthetic recordings inside the real 5th-95th percentiles.

Prints tables and writes ``benchmarks/results/hand_measures.json``.

    .venv/bin/python benchmarks/real/hand_measures.py [--cohort demo_out/cohort]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from symptomfuse.features.hand_kinematics import tapping_measures, tremor_measures

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "data" / "finger_tapping" / "fingertapping_features_severity_diagnosis_June13_2023.csv"
SAME = {"frequency_median": "frequency_median_denoised", "period_median": "period_median_denoised",
        "amplitude_median": "amplitude_median_denoised", "num_interruptions": "numInterruptions_denoised",
        "speed_median": "speed_median_denoised"}


def measure(cohort: Path) -> pd.DataFrame:
    rows = []
    for meta_path in sorted((cohort / "recordings").glob("*.json")):
        meta = json.loads(meta_path.read_text())
        kp_path = meta_path.with_suffix(".keypoints.npy")
        if not kp_path.exists():
            continue
        kp, fps = np.load(kp_path, allow_pickle=False), float(meta["fps"])
        split = int(round(meta["rest_until_s"] * fps))
        aspect = meta["scene"]["width"] / meta["scene"]["height"]
        hand = meta["person"]["hand"]
        rows.append({"recording": meta["recording"], "label": meta["person"]["label"],
                     "true_tremor_hz": hand["rest_tremor_hz"], "true_tap_hz": hand["tap_hz"],
                     "true_decrement": hand["tap_decrement"],
                     **tremor_measures(kp[:split], fps, aspect), **tapping_measures(kp[split:], fps, aspect)})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, default=None, help="a synthetic cohort (default: make one of 48)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hand_measures.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cohort = args.cohort
        if cohort is None:
            from symptomfuse.cli import main as cli

            cohort = Path(tmp) / "cohort"
            cli(["synth", "--out", str(cohort), "--people", "48", "--seed", "0"])
        df = measure(cohort)
    tremor = df[df.true_tremor_hz > 0]
    truth = {"tremor_hz": float(spearmanr(tremor.true_tremor_hz, tremor.tremor_hz).statistic) if len(tremor) > 2 else None,
             "tremor_hz_mean_abs_error": float(np.mean(np.abs(tremor.true_tremor_hz - tremor.tremor_hz))) if len(tremor) else None,
             "tap_hz": float(spearmanr(df.true_tap_hz, df.frequency_median, nan_policy="omit").statistic),
             "decrement": float(spearmanr(df.true_decrement, -df.amplitude_decrement_slope, nan_policy="omit").statistic)}
    real = pd.read_csv(REAL)
    ranges = {}
    for ours, theirs in SAME.items():
        lo, hi = np.nanpercentile(real[theirs], [5, 95])
        ranges[ours] = {"real_p5": float(lo), "real_p95": float(hi),
                        "synthetic_median": float(df[ours].median()),
                        "inside": float(df[ours].between(lo, hi).mean())}
    band = {lab: float(g.tremor_band_share.median()) for lab, g in df.groupby("label")}
    result = {"recordings": len(df), "truth_spearman": truth, "real_ranges": ranges, "tremor_band_share_median": band}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{len(df)} synthetic recordings; against the generator's truth (Spearman): tremor frequency "
          f"{truth['tremor_hz']:.2f} (mean error {truth['tremor_hz_mean_abs_error']:.2f} Hz, {len(tremor)} "
          f"recordings with rest tremor), tapping rate {truth['tap_hz']:.2f}, decrement {truth['decrement']:.2f}")
    print(f"rest-tremor band share, median by label: {band}")
    print(f"\n{'measure':<20}{'real 5th-95th pct':>22}{'synthetic median':>18}{'inside':>8}")
    for m, r in ranges.items():
        print(f"{m:<20}{r['real_p5']:>10.2f} - {r['real_p95']:<9.2f}{r['synthetic_median']:>18.2f}{r['inside']:>8.0%}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
