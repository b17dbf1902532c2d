"""Keypoints: hand landmarks (21 per frame, MediaPipe order) turned into per-frame motion features.

Landmarks come from a ``.npy`` file named in the manifest's ``keypoints`` column (one entry per video
frame), or, with ``curate --hand-landmarks mediapipe``, from MediaPipe Hands run by curation on every
decoded video frame at its full size (``features.landmarks``: the extractor the live engine's own hand
detector uses); live from ``StreamEngine.push_landmarks`` or that detector
(``StreamEngine(hand_detector="mediapipe")``, ``stream --landmarks mediapipe``). Feature function:
``features.keypoints.keypoint_features`` (positions, velocities and accelerations in palm lengths, and a
presence flag). Gate: no hand in enough of the window's frames, or no landmark source at all.
Augmentation of the features ((B, T, 127)): scale and rotation jitter, applied alike to positions,
velocities and accelerations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from symptomfuse.features.keypoints import FEATURES_PER_FRAME, keypoint_features, load_landmarks
from symptomfuse.errors import UsageError
from symptomfuse.modalities.base import Modality, SourceMedia, register
from symptomfuse.tasks import TAP_LEFT, TAP_RIGHT

LANDMARK_SOURCES = ("file", "mediapipe")
HANDS_HOOK = "mediapipe_hands"  # curation runs MediaPipe Hands once per frame for every modality that asks


@dataclass(frozen=True)
class HandLandmarks:
    source: str = "file"  # "file": the manifest's keypoints column; "mediapipe": found in the video by curation


def augment_keypoints(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    import torch  # here, not at import: curation workers never load torch

    b, t, n = x.shape
    pts = (n - 1) // 2  # pairs of (x, y) across positions, velocities, accelerations
    theta = (torch.rand(b, generator=g) - 0.5) * (2 * math.pi * 15 / 360)  # +-7.5 degrees
    scale = 0.9 + 0.2 * torch.rand(b, generator=g)
    c, s = torch.cos(theta) * scale, torch.sin(theta) * scale
    xy = x[..., :-1].reshape(b, t, pts, 2)
    rot = torch.stack([xy[..., 0] * c.view(b, 1, 1) - xy[..., 1] * s.view(b, 1, 1),
                       xy[..., 0] * s.view(b, 1, 1) + xy[..., 1] * c.view(b, 1, 1)], dim=-1)
    return torch.cat([rot.reshape(b, t, -1), x[..., -1:]], dim=2)


@register
class Keypoints(Modality):
    name = "keypoints"
    source = "landmarks"
    needs = ("video",)
    column = "keypoints"
    help = "hand landmark motion (a .npy file of landmarks per video frame)"
    default_encoder = "keypoints_tcn"
    live_label = "hand"
    live_landmarks = "hands"
    tasks = (TAP_RIGHT, TAP_LEFT)
    live_qualities = ("ok", "no_hand", "no_landmarks", "landmarks_behind", "no_data")
    augmentations = {"keypoints": augment_keypoints}
    Settings = HandLandmarks
    options = {"--hand-landmarks": (lambda text: {"source": text},
                                    "where the hand landmarks come from: file (the manifest's keypoints column, the "
                                    "default) or mediapipe (MediaPipe Hands on every video frame at full size; "
                                    "about 15 ms a frame)")}

    def validate(self) -> None:
        if self.settings.source not in LANDMARK_SOURCES:
            raise UsageError(f"--hand-landmarks {self.settings.source!r}: choose one of {', '.join(LANDMARK_SOURCES)}")
        if self.settings.source == "mediapipe":
            import importlib.util

            if importlib.util.find_spec("mediapipe") is None:  # said now, not in every curation worker
                raise UsageError("--hand-landmarks mediapipe needs MediaPipe: pip install --no-deps mediapipe==0.10.21 "
                                 "attrs (make install does)")

    def file_column(self) -> str | None:
        return self.column if self.settings.source == "file" else None

    def source_frame_hook(self):
        if self.settings.source != "mediapipe":
            return None
        from symptomfuse.features.landmarks import frame_hook

        return HANDS_HOOK, frame_hook("hands")  # one tracker per recording, fed its frames in order

    def input_shape(self) -> tuple[int, ...]:
        return (self.timing.window_frames(), FEATURES_PER_FRAME)

    def encoder_args(self) -> dict:
        return {"n_features": FEATURES_PER_FRAME}

    def _landmarks(self, media: SourceMedia) -> np.ndarray:
        """The landmarks of each frame at the shared rate (frames, 21, 3)."""
        if self.settings.source == "mediapipe":
            src = media.per_source_frame[HANDS_HOOK]
        else:
            src = load_landmarks(media.files[self.column], media.source_frames)
        kp = src[np.minimum(media.source_frame_index, len(src) - 1)]
        if len(kp) < len(media.frames):  # padded short recording: hold the last landmarks too
            kp = np.concatenate([kp, np.repeat(kp[-1:], len(media.frames) - len(kp), 0)])
        return kp

    def window_features(self, hands: np.ndarray, aspect: float) -> np.ndarray:
        """One window's model input from its landmarks (frames, 21, 3): the feature function, offline and
        live."""
        return keypoint_features(hands, self.timing.fps, aspect)

    def track(self, media: SourceMedia) -> dict:
        return {"keypoints_landmarks": self._landmarks(media)}

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        kp = self._landmarks(media)
        m, fps = self.timing.window_frames(), self.timing.fps
        aspect = media.source_size[0] / media.source_size[1]
        feats = [self.window_features(kp[int(round(s * fps)):][:m], aspect) for s in starts]
        return {self.name: np.stack(feats) if feats else np.zeros((0, *self.input_shape()), np.float32)}

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        """Mean and standard deviation of each feature over the window."""
        return np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)

    def live_window(self, streams, state, start, wanted):
        from symptomfuse.stream.quality import hand_quality

        if streams.landmarks.last is None:
            return "no_landmarks", None
        hands = streams.landmarks.window(start, self.timing.window_frames())
        quality = "no_data" if hands is None else hand_quality(np.stack(hands), streams.quality)
        if quality != "ok" or not wanted:
            return quality, None
        return quality, np.asarray(self.window_features(np.stack(hands), streams.aspect or 4 / 3), np.float32)[None]
