"""Video features: the one frame function that both curation and live streaming call.

A decoded frame (a PyAV ``VideoFrame`` from a file, a WebRTC track, or a camera array wrapped by
``frame_from_array``) is scaled by FFmpeg's swscale to a fixed small size and returned as RGB uint8.
The function works on one frame at a time, so a window's features are the same however the stream was
cut into windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True)
class FrameConfig:
    width: int = 64
    height: int = 48
    fps: float = 25.0


def frame_from_array(image: np.ndarray, channel_order: str = "rgb") -> av.VideoFrame:
    """Wrap an (H, W, 3) uint8 image (e.g. from OpenCV, ``channel_order="bgr"``) as a VideoFrame."""
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    return av.VideoFrame.from_ndarray(image, format=f"{channel_order}24")


def frame_features(frame: av.VideoFrame, cfg: FrameConfig = FrameConfig()) -> np.ndarray:
    """One frame scaled to (cfg.height, cfg.width, 3) RGB uint8 with area averaging."""
    small = frame.reformat(width=cfg.width, height=cfg.height, format="rgb24", interpolation="AREA")
    return small.to_ndarray()
