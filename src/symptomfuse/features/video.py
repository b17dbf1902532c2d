"""Video features: the one frame function that both curation and live streaming call.

A decoded frame (a PyAV ``VideoFrame`` from a file or a WebRTC track, or a camera image wrapped by
``frame_from_array``) is brought to planar YUV 4:2:0 (what H.264 files and WebRTC already deliver; other
pixel formats go through FFmpeg's converter first), each plane is area-averaged to a fixed small size
with OpenCV, and the small 4:2:0 picture is converted to RGB (ITU-R BT.601, limited range, as FFmpeg
does by default). Working on the decoder's planes is several times faster than converting the full
frame. The function sees one frame at a time, so a window's features are the same however the stream
was cut into windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np
from symptomfuse.errors import UsageError


@dataclass(frozen=True)
class FrameConfig:
    width: int = 64  # even
    height: int = 48  # even
    fps: float = 25.0

    def __post_init__(self):
        if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
            raise UsageError(f"frame size must be even and at least 2x2, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise UsageError(f"fps must be positive, got {self.fps}")


def frame_from_array(image: np.ndarray, channel_order: str = "rgb") -> av.VideoFrame:
    """Wrap an (H, W, 3) uint8 image (e.g. from OpenCV, ``channel_order="bgr"``) as a VideoFrame."""
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if channel_order not in ("rgb", "bgr"):
        raise UsageError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    return av.VideoFrame.from_ndarray(image, format=f"{channel_order}24")


def _plane(p: av.video.plane.VideoPlane) -> np.ndarray:
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that show ``frame`` upright. A phone stores a portrait video on
    its side, with a display matrix that says how to turn it (PyAV's ``rotation``, in degrees counter-
    clockwise); players and FFmpeg's own command turn it, and so does every frame function here, so that
    faces and hands are upright for the trackers. Angles that are not multiples of 90 degrees are left
    alone, as FFmpeg leaves them; camera and WebRTC frames carry none."""
    angle = frame.rotation
    return (angle // 90) % 4 if angle % 90 == 0 else 0


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame at its full size as (H, W, 3) RGB uint8, turned upright (``quarter_turns``)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def frame_features(frame: av.VideoFrame, cfg: FrameConfig = FrameConfig()) -> np.ndarray:
    """One frame, turned upright (``quarter_turns``), scaled to (cfg.height, cfg.width, 3) RGB uint8."""
    turns = quarter_turns(frame)
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    w, h = cfg.width, cfg.height

    def small(plane: av.video.plane.VideoPlane, size: tuple[int, int]) -> np.ndarray:
        pixels = _plane(plane) if not turns else np.ascontiguousarray(np.rot90(_plane(plane), turns))
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA).ravel()

    y, u, v = frame.planes
    i420 = np.concatenate([small(y, (w, h)), small(u, (w // 2, h // 2)), small(v, (w // 2, h // 2))]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
