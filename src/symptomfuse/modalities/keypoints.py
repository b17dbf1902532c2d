"""Keypoints: hand landmarks (21 per frame, MediaPipe order) turned into per-frame motion features.

Landmarks come from a ``.npy`` file named in the manifest's ``keypoints`` column (one entry per video
frame), or live from ``StreamEngine.push_landmarks`` or the engine's own MediaPipe hand detector
(``StreamEngine(hand_detector="mediapipe")``, ``stream --landmarks mediapipe``). Feature function:
``features.keypoints.keypoint_features`` (positions, velocities and accelerations in palm lengths, and a
presence flag). Gate: no hand in enough of the window's frames, or no landmark source at all.
Augmentation of the features ((B, T, 127)): scale and rotation jitter, applied alike to positions,
velocities and accelerations.
"""

from __future__ import annotations

import math

import numpy as np

from symptomfuse.features.keypoints import FEATURES_PER_FRAME, keypoint_features, load_landmarks
from symptomfuse.modalities.base import Modality, SourceMedia, register


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
    live_qualities = ("ok", "no_hand", "no_landmarks", "landmarks_behind", "no_data")
    augmentations = {"keypoints": augment_keypoints}

    def input_shape(self) -> tuple[int, ...]:
        return (self.timing.window_frames(), FEATURES_PER_FRAME)

    def encoder_args(self) -> dict:
        return {"n_features": FEATURES_PER_FRAME}

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        src = load_landmarks(media.files[self.column], media.source_frames)
        kp = src[np.minimum(media.source_frame_index, len(src) - 1)]
        if len(kp) < len(media.frames):  # padded short recording: hold the last landmarks too
            kp = np.concatenate([kp, np.repeat(kp[-1:], len(media.frames) - len(kp), 0)])
        m, fps = self.timing.window_frames(), self.timing.fps
        aspect = media.source_size[0] / media.source_size[1]
        feats = np.stack([keypoint_features(kp[int(round(s * fps)):][:m], fps, aspect) for s in starts])
        return {"keypoints": feats, "keypoints_landmarks": kp}

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
        return quality, keypoint_features(np.stack(hands), self.timing.fps, streams.aspect or 4 / 3)[None]
