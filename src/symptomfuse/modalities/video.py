"""Video: each window's frames, area-averaged to a small RGB picture at the contract's frame rate.

Feature function: ``features.video.frame_features`` (one frame at a time, in curation and live). Gate:
black (most frames dark), frozen (the picture does not change), or no hand in view when landmarks are
given. Augmentation of the frames encoder's prepared motion input ((B, T, 2, H, W): signed luma difference
and its magnitude): contrast, brightness flicker and small shifts. A steady brightness change leaves frame
differences unchanged, so brightness enters as flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symptomfuse.features.video import FrameConfig
from symptomfuse.modalities.base import Modality, SourceMedia, register
from symptomfuse.errors import UsageError
from symptomfuse.tasks import TAP_LEFT, TAP_RIGHT


def augment_motion(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    import torch  # here, not at import: curation workers never load torch

    b, t = x.shape[:2]
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, 1, generator=g)  # scales every luma difference
    flicker = torch.randn(b, t, 1, 1, 1, generator=g) * 0.01  # about 2.5 grey levels
    flicker = flicker * (torch.rand(b, t, 1, 1, 1, generator=g) < 0.1)  # on a tenth of the frames
    signed, magnitude = x[:, :, :1] * contrast + flicker, x[:, :, 1:] * contrast + flicker.abs()
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(torch.cat([signed, magnitude], dim=2), (dy, dx), dims=(3, 4))


@dataclass(frozen=True)
class FrameSize:
    width: int = 64  # even
    height: int = 48  # even


@register
class Video(Modality):
    name = "video"
    source = "video"
    needs = ("video",)
    help = "small RGB frames of the picture"
    default_encoder = "frames_cnn"
    dtype = np.uint8
    Settings = FrameSize
    live_label = "camera"
    tasks = (TAP_RIGHT, TAP_LEFT)  # the frames model of the demo sees a hand
    live_qualities = ("ok", "black", "frozen", "no_hand", "no_data")
    augmentations = {"motion": augment_motion}
    options = {"--frame-size": (lambda text: dict(zip(("width", "height"), (int(v) for v in text.lower().split("x")))),
                                "video feature WIDTHxHEIGHT, both even (default 64x48)")}

    def frame_config(self) -> FrameConfig:
        return FrameConfig(self.settings.width, self.settings.height, self.timing.fps)

    def validate(self) -> None:
        cfg = self.frame_config()  # checks the size
        if max(cfg.width, cfg.height) > 1024:
            raise UsageError(f"--frame-size {cfg.width}x{cfg.height}: at most 1024 on a side (the frames are model "
                             "inputs, a few dozen pixels across by default)")
        window_bytes = self.timing.window_s * self.timing.fps * cfg.width * cfg.height * 3
        if window_bytes > 2**30:
            raise UsageError(f"--frame-size {cfg.width}x{cfg.height} at {self.timing.fps:g} fps makes each "
                             f"{self.timing.window_s:g}-s window's frames {window_bytes / 2**30:.1f} GiB (at most 1): "
                             "make the frames, --fps or --window smaller")
        if self.timing.window_frames() < 2:
            raise UsageError("--window must hold at least two video frames")

    def input_shape(self) -> tuple[int, ...]:
        return (self.timing.window_frames(), self.settings.height, self.settings.width, 3)

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        return {}  # windows are cut from the recording's frames at load time: they overlap

    def track(self, media: SourceMedia) -> dict:
        return {"video": media.frames}

    def windows(self, arrays, starts, index) -> np.ndarray:
        m = self.timing.window_frames()
        first = np.round(starts * self.timing.fps).astype(int)
        return np.stack([arrays["video"][f:f + m] for f in first]) if len(first) else \
            np.zeros((0, *self.input_shape()), np.uint8)

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        """Mean level, and mean absolute frame-to-frame luma change on a 6x8 grid."""
        luma = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (n, T, H, W)
        motion = np.abs(np.diff(luma, axis=1)).mean(axis=1)  # (n, H, W)
        n, h, w = motion.shape
        grid = motion[:, :h // 6 * 6, :w // 8 * 8].reshape(n, 6, h // 6, 8, w // 8).mean(axis=(2, 4))
        return np.concatenate([luma.mean(axis=(1, 2, 3))[:, None], grid.reshape(n, -1)], axis=1)

    def live_window(self, streams, state, start, wanted):
        from symptomfuse.stream.quality import hand_quality, video_quality

        frames = streams.frames.window(start, self.timing.window_frames())
        frames = None if frames is None else np.stack(frames)
        quality = "no_data" if frames is None else video_quality(frames, streams.quality)
        if quality == "ok" and streams.landmarks.last is not None:
            hands = streams.landmarks.window(start, self.timing.window_frames())
            if hands is not None and hand_quality(np.stack(hands), streams.quality) == "no_hand":
                quality = "no_hand"
        return quality, (frames[None] if quality == "ok" and wanted else None)
