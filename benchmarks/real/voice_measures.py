"""Do the voice measures measure what they say? Real voices against published ranges; synthetic voices
against the generator's truth.

1. The four real sustained /a/ recordings in ``../shared/data/pd_voice_samples`` (2 people with
   Parkinson's, 2 healthy controls; Iyer et al. 2023): the measures of each whole recording beside the
   range of the same measures over the 195 recordings of the UCI Parkinsons table (Little et al.),
   which ships in ``data/uci_parkinsons``. Without ``../shared`` this part is skipped.
2. The synthetic cohort's vowels (the generator ``synth.voice`` with the cohort's people): the measured
   local jitter and shimmer of each person's vowel against the jitter and shimmer the generator was
   given (Spearman rank correlation; goal >= 0.8).

Prints two tables and writes ``benchmarks/results/voice_measures.json``.

    .venv/bin/python benchmarks/real/voice_measures.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from symptomfuse.features.voice import NAMES, voice_measures
from symptomfuse.synth.cohort import SynthConfig, sample_people
from symptomfuse.synth.voice import synth_vowel

ROOT = Path(__file__).resolve().parents[2]
VOICES = ROOT.parent / "shared" / "data" / "pd_voice_samples"
UCI = {"f0_mean": "MDVP:Fo(Hz)", "f0_max": "MDVP:Fhi(Hz)", "f0_min": "MDVP:Flo(Hz)",
       "jitter_local": "MDVP:Jitter(%)", "jitter_local_abs": "MDVP:Jitter(Abs)", "jitter_rap": "MDVP:RAP",
       "jitter_ppq5": "MDVP:PPQ", "jitter_ddp": "Jitter:DDP", "shimmer_local": "MDVP:Shimmer",
       "shimmer_local_db": "MDVP:Shimmer(dB)", "shimmer_apq3": "Shimmer:APQ3", "shimmer_apq5": "Shimmer:APQ5",
       "shimmer_apq11": "MDVP:APQ", "shimmer_dda": "Shimmer:DDA", "nhr": "NHR", "hnr": "HNR", "rpde": "RPDE",
       "dfa": "DFA", "ppe": "PPE"}
SR = 16000


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getframerate() != SR or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: expected 16-bit mono {SR} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64) / 32768


def real_voices() -> dict:
    uci = pd.read_csv(ROOT / "data" / "uci_parkinsons" / "parkinsons.csv")
    ranges = {m: (float(uci[c].min()), float(uci[c].max())) for m, c in UCI.items()}
    rows = {}
    for path in sorted(VOICES.glob("*/*.wav")):
        values = dict(zip(NAMES, voice_measures(read_wav(path)).tolist()))
        rows[f"{path.parent.name}/{path.name[:12]}"] = {m: values[m] for m in UCI}
    within = {m: sum(ranges[m][0] <= r[m] <= ranges[m][1] for r in rows.values()) for m in UCI}
    return {"recordings": rows, "uci_range": ranges, "within_range": within}


def synthetic(people: int, seed: int) -> dict:
    truth, measured = [], []
    for p in sample_people(SynthConfig(people=people, seed=seed)):
        x = synth_vowel(p.voice, 4.0, SR, np.random.default_rng([seed, 7, int(p.person_id[1:])]))
        m = dict(zip(NAMES, voice_measures(x[int(0.4 * SR):int(3.6 * SR)])))  # the steady part
        truth.append((p.voice.jitter, p.voice.shimmer, p.voice.noise_ratio))
        measured.append((m["jitter_local"], m["shimmer_local"], m["hnr"]))
    truth, measured = np.array(truth), np.array(measured)
    return {"people": people,
            "spearman_jitter": float(spearmanr(truth[:, 0], measured[:, 0]).statistic),
            "spearman_shimmer": float(spearmanr(truth[:, 1], measured[:, 1]).statistic),
            "spearman_noise_hnr": float(spearmanr(truth[:, 2], measured[:, 2]).statistic)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=48)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "voice_measures.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    result = {"real": real_voices() if VOICES.is_dir() else None, "synthetic": synthetic(args.people, 0)}
    if result["real"]:
        r = result["real"]
        names = list(r["recordings"])
        print(f"{'measure':<18}" + "".join(f"{n:>16}" for n in names) + f"{'UCI range (195 recordings)':>30}")
        for m in UCI:
            lo, hi = r["uci_range"][m]
            cells = "".join(f"{v[m]:>15.5g}{'' if lo <= v[m] <= hi else '*'}" if np.isfinite(v[m]) else f"{'-':>16}"
                            for v in r["recordings"].values())
            print(f"{m:<18}{cells}{lo:>14.4g} - {hi:<13.4g}")
        print("* outside the UCI range")
    s = result["synthetic"]
    print(f"\nsynthetic vowels of {s['people']} people: Spearman of measured against generator truth: jitter "
          f"{s['spearman_jitter']:.3f}, shimmer {s['spearman_shimmer']:.3f} (goal >= 0.8); aspiration noise against "
          f"HNR {s['spearman_noise_hnr']:.3f} (negative: more noise, lower HNR)")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
