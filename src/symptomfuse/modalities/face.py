"""Face measures: measures of facial expression (hypomimia) of each window's face landmarks.

Curation runs MediaPipe FaceMesh (478 points, the model inside the ``mediapipe`` wheel) on every decoded
video frame at its full size, one tracker per recording, and brings the landmarks to the shared frame
rate. Feature function: ``features.face_measures.face_measures`` (blink rate, eye and mouth opening, smile
width with its range and variability, expressivity: distances in eye-corner widths), plus the share of
frames with a face. Curated only when named (``curate --modalities audio,face_measures``): FaceMesh costs
about 5-11 ms a frame. Encoder: ``mlp`` (NaN, e.g. the measures of a window with no face in most frames,
is imputed with training statistics and flagged).

Live, the engine's face detector (``StreamEngine(face_detector="mediapipe")``, ``stream --landmarks
mediapipe`` or a camera) runs FaceMesh on each full-size pushed frame into the face ring, and the last
window's landmarks give the same vector. Gate: a face in fewer than half the window's frames
("no_face"), or no face detector ("no_landmarks": the live page sends frames too small for FaceMesh).

A 3-s window holds about one blink at a typical 15-20 a minute: a window's blink rate is rough, and a
recording's windows together (the person-level report) say more.
"""

from __future__ import annotations

import numpy as np

from symptomfuse.errors import UsageError
from symptomfuse.features.face_measures import NAMES as MEASURES
from symptomfuse.features.face_measures import face_measures
from symptomfuse.modalities.base import Measures, Modality, SourceMedia, register
from symptomfuse.tasks import SMILE

NAMES = ("face_present", *MEASURES)


class FaceTrack(Measures, Modality):
    """Base of the modalities measured on a per-frame face track (not registered itself): curation runs
    the track's extractor (``features.landmarks``, kind ``live_landmarks``) on every decoded frame at its
    full size, one tracker per recording; the live engine runs the same extractor into its ring of that
    kind. A subclass gives ``NAMES`` (the first: "face_present") and ``window_features``."""

    source = "video"
    needs = ("video",)
    curated_by_default = False
    tasks = (SMILE,)
    live_qualities = ("ok", "no_face", "no_landmarks", "landmarks_behind", "no_data")

    def validate(self) -> None:
        import importlib.util

        if importlib.util.find_spec("mediapipe") is None:  # said now, not in every curation worker
            raise UsageError(f"{self.name} needs MediaPipe: pip install --no-deps mediapipe==0.10.21 attrs "
                             "(make install does)")

    @property
    def hook_key(self) -> str:
        return f"mediapipe_{self.live_landmarks}"

    def source_frame_hook(self):
        from symptomfuse.features.landmarks import frame_hook

        return self.hook_key, frame_hook(self.live_landmarks)  # one tracker per recording, frames in order

    def window_features(self, track: np.ndarray, aspect: float) -> np.ndarray:
        """One window's vector from its frames' track."""
        raise NotImplementedError

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        src = media.per_source_frame[self.hook_key]  # on disk: read each window's rows
        m, fps = self.timing.window_frames(), self.timing.fps
        aspect = media.source_size[0] / media.source_size[1]
        index = media.source_frame_index
        rows = []
        for s in starts:
            f = int(round(s * fps))
            pick = index[f:f + m]
            if len(pick) < m:  # a padded short recording: hold the last frame
                pick = np.concatenate([pick, np.repeat(pick[-1:], m - len(pick))])
            rows.append(self.window_features(src[np.minimum(pick, len(src) - 1)], aspect))
        return {self.name: np.stack(rows) if rows else np.zeros((0, len(self.NAMES)), np.float32)}

    def live_window(self, streams, state, start, wanted):
        ring = streams.by_kind[self.live_landmarks]
        if ring.last is None:
            return "no_landmarks", None  # no detector of this kind on this stream
        track = ring.window(start, self.timing.window_frames())
        if track is None:
            return "no_data", None
        x = self.window_features(np.stack(track), streams.aspect or 4 / 3)
        if x[0] < 0.5:  # a face in fewer than half the window's frames
            return "no_face", None
        return "ok", (x[None] if wanted else None)


@register
class FaceMeasures(FaceTrack):
    name = "face_measures"
    NAMES = NAMES
    help = "facial-expression measures (blinks, smile, expressivity) from MediaPipe FaceMesh on each frame"
    live_label = "face"
    live_landmarks = "face"

    def window_features(self, face: np.ndarray, aspect: float) -> np.ndarray:
        """One window's vector from its landmarks (frames, 478, 3)."""
        present = np.all(np.isfinite(face[..., :2].reshape(len(face), -1)), axis=1)
        values = {"face_present": float(present.mean()) if len(face) else 0.0,
                  **face_measures(face, self.timing.fps, aspect)}
        return np.array([values[n] for n in NAMES], np.float32)
