"""Hand measures: the clinical measures of each window's hand landmarks, one vector per window.

Feature function: ``features.hand_kinematics`` (rest tremor: the share of movement in the 3.5-7.5 Hz
band, its peak frequency and amplitude in palm lengths; finger tapping: the taps' rate, period,
aperiodicity, amplitude, its decrement over the window, interruptions, freezes, speed and wrist
movement), plus the share of frames with a hand. Curation calls it on each window and the live engine on
its last window of landmarks: the same numbers. The landmarks come from where ``keypoints``' come from
(``--hand-landmarks file|mediapipe``, the manifest's keypoints column; live, ``push_landmarks`` or the
engine's hand detector), and with both modalities curated MediaPipe runs once per frame. Curated only
when named (``curate --modalities keypoints,hand_measures``). Encoder: ``mlp`` (NaN, e.g. tapping
measures of a window with fewer than three taps, is imputed with training statistics and flagged). Gate:
the keypoints gate (no hand, no landmark source).

A 3-s window holds a handful of taps: the tapping measures of one window are rough, and the decrement
of a whole 10-s task is better seen over a recording's windows together (the person-level report).
"""

from __future__ import annotations

import numpy as np

from symptomfuse.features.hand_kinematics import TAPPING_NAMES, TREMOR_NAMES, tapping_measures, tremor_measures
from symptomfuse.modalities.base import Measures, register
from symptomfuse.modalities.keypoints import Keypoints

NAMES = ("hand_present", *TREMOR_NAMES, *TAPPING_NAMES)


@register
class HandMeasures(Measures, Keypoints):
    name = "hand_measures"
    NAMES = NAMES
    help = "rest-tremor and finger-tapping measures of each window's hand landmarks"
    curated_by_default = False
    augmentations = {}
    live_label = "hand measures"

    def track(self, media) -> dict:
        return {}  # the landmarks are keypoints' to keep; these measures are per window

    def window_features(self, hands: np.ndarray, aspect: float) -> np.ndarray:
        fps = self.timing.fps
        present = float(np.mean(np.all(np.isfinite(hands[..., :2].reshape(len(hands), -1)), axis=1))) if len(hands) else 0.0
        values = {"hand_present": present, **tremor_measures(hands, fps, aspect), **tapping_measures(hands, fps, aspect)}
        return np.array([values[n] for n in NAMES], np.float32)
