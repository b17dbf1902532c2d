"""Facial measures with known answers: set blinks and a set smile come back from a landmark track."""

import numpy as np
import pytest

from symptomfuse.features.face_measures import (EYE_CORNERS, INNER_LIPS, LEFT_EYE, MOUTH_CORNERS, RIGHT_EYE,
                                                face_measures)

FPS = 30.0


def _face(seconds=12.0, blinks=(), smile_amp=0.0, smile_hz=0.5, blink_frames=4):
    """(T, 478, 3) landmarks: eye corners 0.2 of the picture's height apart (the unit of the measures),
    eyelids 0.05 apart (a twentieth of the eye's width in each... set below), blinks closing them for 4
    frames at the given seconds, the mouth's width 0.16 (0.8 units) +- ``smile_amp`` units."""
    t = np.arange(int(seconds * FPS)) / FPS
    kp = np.zeros((len(t), 478, 3))
    kp[:, :, 0], kp[:, :, 1] = 0.5, 0.5
    unit = 0.2
    for eye, cx in ((LEFT_EYE, 0.5 - unit / 2 + 0.04), (RIGHT_EYE, 0.5 + unit / 2 - 0.04)):
        open_ = np.full(len(t), 0.012)
        for b in blinks:
            open_[(t >= b - 1e-9) & (t < b + (blink_frames - 0.5) / FPS)] = 0.001
        corner_a, up1, up2, corner_b, lo1, lo2 = eye
        kp[:, corner_a, 0], kp[:, corner_b, 0] = cx - 0.04, cx + 0.04
        for up, lo, dx in ((up1, lo2, -0.013), (up2, lo1, 0.013)):
            kp[:, up, 0], kp[:, lo, 0] = cx + dx, cx + dx
            kp[:, up, 1], kp[:, lo, 1] = 0.5 - open_, 0.5 + open_
    kp[:, EYE_CORNERS[0], 0], kp[:, EYE_CORNERS[1], 0] = 0.5 - unit / 2, 0.5 + unit / 2
    width = (0.8 + smile_amp * np.sin(2 * np.pi * smile_hz * t)) * unit
    kp[:, MOUTH_CORNERS[0], 0], kp[:, MOUTH_CORNERS[1], 0] = 0.5 - width / 2, 0.5 + width / 2
    kp[:, MOUTH_CORNERS, 1] = 0.7
    kp[:, INNER_LIPS[0], 1], kp[:, INNER_LIPS[1], 1] = 0.7 - 0.01, 0.7 + 0.01
    return kp.astype(np.float32)


def test_set_blinks_come_back_as_a_rate():
    m = face_measures(_face(blinks=(1.0, 4.0, 7.0, 10.0)), FPS, aspect=1.0)
    assert m["blink_rate"] == pytest.approx(20.0)  # 4 blinks in 12 s
    assert face_measures(_face(), FPS, aspect=1.0)["blink_rate"] == 0.0
    long_closure = _face(blinks=(2.0,), blink_frames=40)  # eyes shut 1.3 s: not a blink
    assert face_measures(long_closure, FPS, aspect=1.0)["blink_rate"] == 0.0


def test_a_set_smile_comes_back_in_eye_corner_units():
    still = face_measures(_face(), FPS, aspect=1.0)
    smiling = face_measures(_face(smile_amp=0.1), FPS, aspect=1.0)
    assert still["smile_width_mean"] == pytest.approx(0.8, abs=1e-3) and still["smile_width_range"] < 1e-3
    assert smiling["smile_width_range"] == pytest.approx(0.2, abs=0.01)
    assert smiling["smile_width_std"] == pytest.approx(0.1 / np.sqrt(2), rel=0.05)
    # two of the twelve lip and brow points move, at a mean speed of 2/pi * 2 pi 0.5 Hz * 0.05 units
    assert smiling["expressivity"] == pytest.approx(2 / 12 * 0.1, rel=0.1) and still["expressivity"] < 1e-6
    assert still["mouth_opening_mean"] == pytest.approx(0.1, abs=1e-3)
    # the same face twice as far from the camera: the same measures
    far = _face(smile_amp=0.1)
    far[..., :2] = 0.5 + (far[..., :2] - 0.5) / 2
    assert face_measures(far, FPS, aspect=1.0)["smile_width_range"] == pytest.approx(smiling["smile_width_range"], rel=1e-3)


def test_a_lost_face_gives_nan():
    kp = _face()
    kp[: int(0.7 * len(kp))] = np.nan
    assert np.isnan(face_measures(kp, FPS)["blink_rate"])
