"""Hand measures with known answers: a landmark track with a set tremor, and finger taps with a set rate
and decrement, give them back."""

import numpy as np
import pytest

from symptomfuse.features.hand_kinematics import opening_angle, tapping_measures, tremor_measures

FPS = 30.0


def _hand(angle_deg: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """(T, 21, 3) landmarks of an upright hand (wrist at the bottom, palm length 0.1 of the picture's
    height) whose thumb and index tips open by ``angle_deg`` at the wrist; ``offset`` (T, 2) moves it all."""
    t = len(angle_deg)
    kp = np.zeros((t, 21, 3))
    wrist = np.array([0.5, 0.8])
    kp[:, :, :2] = wrist
    for i, j in enumerate((5, 9, 13, 17)):  # finger bases in a row above the wrist
        kp[:, j, :2] = wrist + [(-0.045 + 0.03 * i) / (4 / 3), -0.1]
    for j in range(1, 21):
        if j not in (4, 8, 5, 9, 13, 17):
            kp[:, j, :2] = wrist + [0, -0.12]
    half = np.radians(angle_deg) / 2
    for j, sign in ((4, -1), (8, 1)):
        kp[:, j, 0] = wrist[0] + 0.15 * np.sin(sign * half) / (4 / 3)
        kp[:, j, 1] = wrist[1] - 0.15 * np.cos(half)
    if offset is not None:
        kp[:, :, :2] += offset[:, None, :]
    return kp.astype(np.float32)


def test_a_set_rest_tremor_comes_back():
    t = np.arange(int(10 * FPS)) / FPS
    amp = 0.05 * 0.1  # 0.05 palm lengths
    hand = _hand(np.full(len(t), 20.0), np.stack([amp * np.sin(2 * np.pi * 5.2 * t), np.zeros_like(t)], 1))
    m = tremor_measures(hand, FPS)
    assert m["tremor_hz"] == pytest.approx(5.2, abs=0.3)
    assert m["tremor_band_share"] > 0.8
    # root-mean-square of a sine of 0.05 palm lengths (x measured in picture heights: aspect 4:3)
    assert m["tremor_amplitude"] == pytest.approx(0.05 * (4 / 3) / np.sqrt(2), rel=0.2)
    still = tremor_measures(_hand(np.full(len(t), 20.0), np.random.default_rng(0).normal(0, 1e-4, (len(t), 2))), FPS)
    assert still["tremor_amplitude"] < m["tremor_amplitude"] / 10
    slow = tremor_measures(hand * 0 + _hand(np.full(len(t), 20.0), np.stack(
        [amp * np.sin(2 * np.pi * 10 * t), np.zeros_like(t)], 1)), FPS)  # physiological, not rest tremor
    assert slow["tremor_band_share"] < 0.2


def test_set_taps_with_a_decrement_come_back():
    n_taps, hz = 12, 3.0
    t = np.arange(int(n_taps / hz * FPS)) / FPS  # 12 whole cycles: 12 opening peaks
    peak = np.interp(t, [0, n_taps / hz], [40, 20])  # amplitude falls from 40 to 20 degrees over the taps
    angle = 5 + (peak - 5) * (0.5 - 0.5 * np.cos(2 * np.pi * hz * t))
    hand = _hand(angle)
    assert np.allclose(opening_angle(hand), angle, atol=0.5)
    m = tapping_measures(hand, FPS)
    assert m["num_peaks"] == n_taps
    assert m["frequency_median"] == pytest.approx(hz, abs=0.1) and m["period_cv"] < 0.05
    assert m["amplitude_decrement_slope"] == pytest.approx(-20 / (n_taps - 1), rel=0.25)
    assert m["amplitude_decrement_last_to_first_half"] > 20 and m["num_interruptions"] == 0
    steady = tapping_measures(_hand(5 + 35 * (0.5 - 0.5 * np.cos(2 * np.pi * hz * t))), FPS)
    assert abs(steady["amplitude_decrement_slope"]) < 0.3 and steady["amplitude_median"] == pytest.approx(35, abs=2)


def test_a_pause_is_an_interruption_and_a_lost_hand_gives_nan():
    hz = 3.0
    t = np.arange(int(6 * FPS)) / FPS
    angle = 5 + 35 * (0.5 - 0.5 * np.cos(2 * np.pi * hz * t))
    angle[(t > 2.0) & (t < 3.0)] = 5  # a one-second pause
    m = tapping_measures(_hand(angle), FPS)
    assert m["num_interruptions"] >= 1 and m["max_freeze"] >= 0 and m["period_cv"] > 0.3
    lost = _hand(angle)
    lost[: int(0.6 * len(lost))] = np.nan
    assert np.isnan(tapping_measures(lost, FPS)["num_peaks"])


def test_hand_measures_modality_offline_live_and_trained(cohort, tmp_path, capsys):
    """``hand_measures``: curated beside keypoints from the same landmark files (one --hand-landmarks flag
    for both), each window's vector is the feature function of that window's landmarks, the live reader
    gives the same vector from pushed landmarks, and a network trains on it end to end."""
    import json

    import pandas as pd

    from symptomfuse.cli import main
    from symptomfuse.data.cache import FeatureCache
    from symptomfuse.features.keypoints import load_landmarks
    from symptomfuse.modalities.hand_measures import NAMES
    from symptomfuse.stream.buffers import Streams
    from symptomfuse.stream.quality import QualityConfig

    cur = tmp_path / "c"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--labels", "healthy,parkinsons",
                 "--modalities", "keypoints,hand_measures", "--hand-landmarks", "file", "--workers", "2"]) == 0
    contract = json.loads((cur / "contract.json").read_text())
    assert contract["modalities"]["hand_measures"]["settings"] == contract["modalities"]["keypoints"]["settings"]
    from symptomfuse.contract import FeatureContract

    mod = FeatureContract.load(cur).modality("hand_measures")
    rec = pd.read_csv(cur / "recordings.csv").iloc[0]
    arrays = FeatureCache(cur / "cache").load(rec.cache_key)
    assert "hand_measures_landmarks" not in arrays and arrays["hand_measures"].shape == (4, len(NAMES))
    files = json.loads(rec.files)
    lm = load_landmarks(files["keypoints"])  # 25 fps in, 25 fps out
    want = mod.window_features(lm[25:100], 320 / 240)  # the window from 1 s
    np.testing.assert_array_equal(arrays["hand_measures"][1], want)
    assert want[NAMES.index("hand_present")] == 1.0 and np.isfinite(want[NAMES.index("tremor_hz")])

    streams = Streams(25.0, 0.0, 10.0, QualityConfig())
    streams.aspect = 320 / 240
    for k in range(101):  # the window ends when the next frame's time has come
        streams.landmarks.push(lm[k], k / 25)
    quality, live = mod.live_window(streams, None, 1.0, True)
    assert quality == "ok"
    np.testing.assert_array_equal(live[0], want)

    capsys.readouterr()
    assert main(["train", str(cur), "--out", str(tmp_path / "r"), "--modalities", "hand_measures", "--folds", "2",
                 "--epochs", "2", "--fusions", "", "--late", "", "--baselines", "lr"]) == 0
    metrics = json.loads((tmp_path / "r" / "run.json").read_text())["models"]
    assert "hand_measures_only" in metrics and "lr_hand_measures" in metrics
