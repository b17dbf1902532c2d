"""Voice measures with known answers: pulse trains of set jitter and shimmer, the nonlinear measures on
signals whose answer is known, and the ``voice`` modality curated, trained and read live."""

import numpy as np
import pytest
from scipy.signal import lfilter

from symptomfuse.features.voice import NAMES, dfa, pitch_period_entropy, rpde, voice_measures

SR = 16000


def _pulse_train(jitter_samples: int, shimmer: float, period: int = 128, seconds: float = 3.0, seed: int = 0):
    """Impulses whose periods alternate period -+ jitter_samples and amplitudes 1 -+ shimmer (125 Hz at
    16 kHz: whole-sample periods, so the truth is exact), through two formant resonators."""
    x = np.zeros(int(seconds * SR))
    pos, i, periods, amps = 160, 0, [], []
    while pos < len(x) - 400:
        sign = 1 if i % 2 else -1
        x[pos] = 1 + sign * shimmer
        periods.append(period + sign * jitter_samples)
        amps.append(1 + sign * shimmer)
        pos += periods[-1]
        i += 1
    for f, bw in ((700, 200), (1200, 200)):
        c = -np.exp(-2 * np.pi * bw / SR)
        b = 2 * np.exp(-np.pi * bw / SR) * np.cos(2 * np.pi * f / SR)
        x = lfilter([1 - b - c], [1, -b, -c], x)
    x += 1e-4 * np.random.default_rng(seed).standard_normal(len(x))
    periods, amps = np.array(periods[:-1], float), np.array(amps)
    return (0.5 * x / np.abs(x).max(), np.mean(np.abs(np.diff(periods))) / periods.mean(),
            np.mean(np.abs(np.diff(amps))) / amps.mean())


@pytest.mark.parametrize("k,shimmer", [(1, 0.02), (2, 0.05), (3, 0.1)])
def test_a_pulse_train_gives_back_its_jitter_and_shimmer(k, shimmer):
    x, jitter, true_shimmer = _pulse_train(k, shimmer)
    m = dict(zip(NAMES, voice_measures(x)))
    assert m["jitter_local"] == pytest.approx(jitter, rel=0.05)
    assert m["jitter_local_abs"] == pytest.approx(2 * k / SR, rel=0.05)  # |T_i - T_i+1| in seconds
    assert m["jitter_rap"] == pytest.approx(4 * k / 3 / 128, rel=0.05)  # alternating: |T - mean of 3| = 4k/3
    assert m["jitter_ddp"] == pytest.approx(3 * m["jitter_rap"], rel=1e-3)
    assert m["shimmer_local"] == pytest.approx(true_shimmer, rel=0.06)
    assert m["shimmer_apq3"] == pytest.approx(4 * shimmer / 3, rel=0.06)
    assert m["shimmer_dda"] == pytest.approx(3 * m["shimmer_apq3"], rel=1e-3)
    assert m["f0_mean"] == pytest.approx(SR / 128, rel=0.02)


def test_a_steady_voice_has_less_perturbation_and_more_harmonicity_than_a_rough_one():
    steady, rough = (dict(zip(NAMES, voice_measures(_pulse_train(k, s)[0]))) for k, s in ((0, 0.0), (3, 0.1)))
    assert steady["jitter_local"] < 0.002 and steady["shimmer_local"] < 0.005
    assert steady["hnr"] > rough["hnr"] + 5 and steady["nhr"] < rough["nhr"]


def test_silence_and_noise_give_missing_perturbation_measures_not_errors():
    silent = voice_measures(np.zeros(SR * 3))
    assert np.isnan(silent[NAMES.index("jitter_local")]) and silent.shape == (len(NAMES),)
    noise = voice_measures(np.random.default_rng(0).standard_normal(SR * 3) * 0.1)
    assert noise.shape == (len(NAMES),)


def test_rpde_orders_periodic_below_noisy():
    t = np.arange(SR * 2) / SR
    rng = np.random.default_rng(0)
    periodic = rpde(np.sin(2 * np.pi * 150 * t), SR)
    noisy = rpde(np.sin(2 * np.pi * 150 * t) + 0.3 * rng.standard_normal(len(t)), SR)
    white = rpde(rng.standard_normal(len(t)), SR)
    assert periodic < 0.2 < noisy < white


def test_dfa_gives_the_known_exponents_of_white_and_brown_noise():
    rng = np.random.default_rng(0)
    white = rng.standard_normal(SR * 3)
    assert dfa(white, SR) == pytest.approx(0.5, abs=0.1)
    assert dfa(np.cumsum(white), SR) == pytest.approx(1.5, abs=0.15)


def test_ppe_ignores_smooth_vibrato_and_sees_irregular_pitch():
    rng = np.random.default_rng(0)
    cycles = np.arange(600)
    vibrato = 150 * 2 ** (0.5 * np.sin(2 * np.pi * cycles / 30) / 12)  # half a semitone, smooth
    irregular = 150 * 2 ** (rng.normal(0, 0.5, 600) / 12)  # half a semitone, random from cycle to cycle
    assert pitch_period_entropy(vibrato) < 0.3 < pitch_period_entropy(irregular)


def test_the_voice_modality_curates_trains_names_its_features_and_reads_live_alike(cohort, tmp_path):
    """Curated only when named; the same measures offline and from the live engine's microphone ring."""
    import json

    import pandas as pd
    import torch

    from symptomfuse.cli import main
    from symptomfuse.data.dataset import load_curated
    from symptomfuse.models.multimodal import MultimodalClassifier
    from symptomfuse.stream.detector import Detector
    from symptomfuse.stream.engine import StreamEngine
    from symptomfuse.stream.export import export_models
    from symptomfuse.stream.sources import replay_file

    cur = tmp_path / "cur"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--modalities", "voice_measures",
                 "--labels", "healthy,parkinsons", "--workers", "1"]) == 0
    contract = json.loads((cur / "contract.json").read_text())
    assert list(contract["modalities"]) == ["voice_measures"]
    assert main(["train", str(cur), "--out", str(tmp_path / "run"), "--folds", "2", "--epochs", "3",
                 "--baselines", "lr"]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--bootstrap", "20", "--importance"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {t["feature"] for t in metrics["feature_importance"]["voice_measures"]["top"]} <= set(NAMES)
    ws = load_curated(cur, ["voice_measures"])
    jit = np.asarray(ws.inputs["voice_measures"])[:, NAMES.index("jitter_local")]
    assert np.isfinite(jit).mean() > 0.9 and 0.001 < np.nanmedian(jit) < 0.05  # voiced windows, plausible
    # live: a voice model exported and fed the recording through the engine gives the offline numbers
    model = MultimodalClassifier({"voice_measures": {"name": "mlp", "n_features": len(NAMES), "dim": 8}}, None, 2, init_seed=0)
    model.encoders["voice_measures"].fit_normalizer(torch.from_numpy(np.asarray(ws.inputs["voice_measures"])))
    export_models({"voice_measures_only": (model.eval(), 1.0)}, "voice_measures_only", ws.contract, tmp_path / "export", onnx=False)
    det = Detector.load(tmp_path / "export", "torch")
    rec = ws.windows.recording_id.iloc[0]
    sel = (ws.windows.recording_id == rec).to_numpy()
    offline = det.predict({"voice_measures": ws.inputs["voice_measures"][sel]}).modalities["voice_measures"][:, 1]
    events = {e["window"][0]: e for e in replay_file(StreamEngine(det, update_every=1.0, smooth=1),
                                                     cohort / "recordings" / f"{rec}.mp4")}
    live = [events[s]["modalities"]["voice_measures"]["p"] for s in ws.windows.start_s[sel]]
    assert np.allclose(live, offline, atol=1e-5)
    assert pd.read_csv(cur / "windows.csv").shape[0] == len(ws.y)
