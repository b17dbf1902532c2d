"""aiortc media to the streaming engine's inputs: float32 mono audio, RGB frames, one clock per session.

WebRTC gives every track its own RTP clock with a random origin (and 32-bit timestamps that wrap). The
engine wants audio and video on one media clock in seconds. :class:`MediaClock` anchors each track's first
frame at the moment it arrived on the server and counts on from there in that track's own RTP time, so the
two tracks line up to within the difference of their first frames' network delays (tens of milliseconds
on a LAN; the engine's windows are seconds long).
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

RTP_WRAP = 1 << 32


def audio_to_mono_float(frame) -> np.ndarray:
    """An ``av.AudioFrame`` (any sample format, mono or multi-channel) as 1-D float32 in [-1, 1]."""
    data = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if fmt.is_planar:                       # (channels, samples)
        x = data.reshape(channels, -1).T
    else:                                   # (1, samples * channels), interleaved
        x = data.reshape(-1, channels)
    if np.issubdtype(x.dtype, np.integer):
        scale = float(np.iinfo(x.dtype).max) + 1.0
        x = x.astype(np.float32) / scale
    else:
        x = x.astype(np.float32)
    mono = x.mean(axis=1) if channels > 1 else x[:, 0]
    return np.ascontiguousarray(np.clip(mono, -1.0, 1.0), dtype=np.float32)


class _Unwrap:
    """Unwrap 32-bit RTP timestamps into a monotonic integer count (tolerates reordering)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.total = 0

    def __call__(self, ts: int) -> int:
        ts %= RTP_WRAP
        if self.last is None:
            self.last, self.total = ts, ts
            return ts
        step = (ts - self.last) % RTP_WRAP
        if step >= RTP_WRAP // 2:           # a step backwards (reordered or repeated frame)
            step -= RTP_WRAP
        self.total += step
        self.last = ts
        return self.total


class MediaClock:
    """Media time in seconds for the frames of several tracks, on one clock starting at the session's start."""

    def __init__(self, now=time.monotonic) -> None:
        self._now = now
        self.start = now()
        self._unwrap: dict[str, _Unwrap] = {}
        self._origin: dict[str, float] = {}

    def now(self) -> float:
        """The media time it is now (where a frame arriving without delay would be)."""
        return self._now() - self.start

    def time(self, kind: str, pts: int | None, time_base: Fraction | None) -> float:
        """Media time of a frame of track ``kind`` ('audio' or 'video') with this pts and time base."""
        if pts is None or time_base is None:   # no timestamp: use the arrival time
            return self._now() - self.start
        unwrap = self._unwrap.setdefault(kind, _Unwrap())
        ticks = unwrap(int(pts))
        seconds = float(ticks * time_base)
        if kind not in self._origin:
            self._origin[kind] = (self._now() - self.start) - seconds
        return max(0.0, seconds + self._origin[kind])
