"""A feature table whose columns are a live modality's measures (``--table NAME=FILE::cols:OURS=THEIRS::
live:hand_measures``): a model trained on real people's finger-tapping table (data/finger_tapping, 241
people, severity 0-4) scores the hand landmarks of a stream, reading hand_measures' window behind its gate."""

import json

import numpy as np
import pytest

from symptomfuse.cli import main
from symptomfuse.contract import FeatureContract
from symptomfuse.stream.buffers import Streams
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.engine import StreamEngine
from symptomfuse.stream.quality import QualityConfig
from symptomfuse.stream.sources import replay_file
from symptomfuse.stream.view import render
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "data" / "finger_tapping" / "fingertapping_features_severity_diagnosis_June13_2023.csv"
SAME = {"frequency_median": "frequency_median_denoised", "period_median": "period_median_denoised",
        "amplitude_median": "amplitude_median_denoised", "num_interruptions": "numInterruptions_denoised",
        "speed_median": "speed_median_denoised"}
COLS = "cols:" + ",".join(f"{ours}={theirs}" for ours, theirs in SAME.items())
PERSON = r"(NIH[A-Za-z0-9]+|\d+Z\d+)(?=-task)"


def _curate(out, cols=COLS, live="hand_measures"):
    return main(["curate", "--table", f"tapping={TABLE}::{cols}::live:{live}", "--out", str(out),
                 "--person-col", "filename", "--person-pattern", PERSON, "--label-col", "Rating",
                 "--labels", "0,1,2,3,4", "--ordinal", "--label-scope", "recording"])


@pytest.fixture(scope="module")
def severity_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-table")
    assert _curate(root / "cur") == 0
    assert main(["train", str(root / "cur"), "--out", str(root / "run"), "--folds", "2", "--epochs", "5",
                 "--loss", "ordinal", "--baselines", "", "--seed", "1"]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "model"), "--fold", "0", "--no-onnx"]) == 0
    return root


def test_the_table_records_its_live_modality_and_names_features_after_its_measures(severity_model):
    contract = json.loads((severity_model / "cur" / "contract.json").read_text())
    settings = contract["modalities"]["tapping"]["settings"]
    assert settings["live"] == "hand_measures" and settings["columns"] == list(SAME)
    mod = FeatureContract.load(severity_model / "cur").modality("tapping")
    assert mod.live_landmarks == "hands" and [t.name for t in mod.tasks] == ["tap_right", "tap_left"]


def test_live_input_is_hand_measures_window_of_those_measures(severity_model, cohort):
    """The same landmarks in the engine's rings: the table's live input is hand_measures' own vector,
    those five measures of it, in the table's order."""
    tapping = FeatureContract.load(severity_model / "cur").modality("tapping")
    hands = tapping.live_source
    streams = Streams(25.0, 0.0, 10.0, QualityConfig())
    kp = np.load(cohort / "recordings" / "P001_s1.keypoints.npy")
    for k, frame in enumerate(kp[:75]):
        streams.landmarks.push(frame, k / 25)
    streams.landmarks.close()
    q_hand, x_hand = hands.live_window(streams, hands.live_state(10.0), 0.0, True)
    q_tab, x_tab = tapping.live_window(streams, tapping.live_state(10.0), 0.0, True)
    assert q_hand == q_tab == "ok"
    names = list(hands.feature_names())
    np.testing.assert_array_equal(x_tab[0], x_hand[0, [names.index(n) for n in SAME]])


def test_a_real_severity_model_scores_a_stream_of_hand_landmarks(severity_model, cohort):
    det = Detector.load(severity_model / "model")
    assert det.classes == ["0", "1", "2", "3", "4"] and det.modalities == ["tapping"]
    events = list(replay_file(StreamEngine(det, update_every=0.5), cohort / "recordings" / "P001_s1.mp4"))
    ok = [e for e in events if e["modalities"]["tapping"]["quality"] == "ok"]
    assert len(ok) >= 0.8 * len(events) and len(events) >= 5
    for e in ok:
        probs = e["fused"]["probs"]
        assert list(probs) == det.classes and abs(sum(probs.values()) - 1) < 1e-5
        # the rating evaluation scores (the expected rating, rounded to a class), not the most probable class
        expected = sum(float(c) * p for c, p in probs.items())
        rating = e["fused"]["rating"]
        assert rating["expected"] == pytest.approx(expected, abs=1e-3)
        assert rating["predicted"] == min(det.classes, key=lambda c: abs(float(c) - rating["expected"]))
    assert any(f"rating {ok[-1]['fused']['rating']['predicted']} (expected" in line for line in render(ok[-1], None))


def test_a_ratings_model_says_its_rating_not_its_top_class():
    from symptomfuse.stream.engine import rating

    values, classes = np.array([0.0, 1.0, 2.0]), ["0", "1", "2"]
    split = np.array([0.45, 0.1, 0.45])  # most probable: 0 (first of a tie); expected: 1
    assert rating(split, values, classes) == {"expected": 1.0, "predicted": "1"}
    assert rating(split, None, classes) is None  # not a ratings model: no rating


def test_features_that_are_not_the_live_modalitys_measures_are_refused(tmp_path, capsys):
    bad = COLS + ",tremor=amplitude_mean_denoised"
    assert _curate(tmp_path / "c", cols=bad) == 2
    err = capsys.readouterr().err
    assert "['tremor'] are not" in err and "cols:OURS=THEIRS" in err
    assert _curate(tmp_path / "c2", live="tapping_speed") == 2
    assert "unknown modality 'tapping_speed'" in capsys.readouterr().err
