"""Quality gates: is a window of a modality fit to predict from? Each returns "ok" or why not.

audio      "silence"   the window's loudness is below ``silence_db`` dBFS
           "no_voice"  fewer than ``min_voiced`` of its 40 ms frames are voiced (a clear pitch between
                       60 and 400 Hz in the autocorrelation; every other frame is looked at), e.g.
                       noise or a room without a voice
video      "black"     most frames are dark (mean level below ``black_level`` of 255)
           "frozen"    the picture does not change (a stalled camera repeats one frame)
           "no_hand"   landmarks are given and a hand is seen in fewer than ``min_hand`` of the frames
keypoints  "no_hand"   as above; without a landmark source the engine reports "no_landmarks"

Without landmarks, video has no check that a person or a hand is in view: only dark and frozen
pictures are caught.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from symptomfuse.features.audio import SAMPLE_RATE, rms_db


@dataclass(frozen=True)
class QualityConfig:
    silence_db: float = -50.0  # dBFS over the window
    min_voiced: float = 0.2  # share of voiced 40 ms frames
    voicing: float = 0.5  # normalised autocorrelation peak that counts as voiced
    black_level: float = 16.0  # mean 0-255 level of a dark frame
    still_level: float = 0.05  # mean absolute 0-255 change below which two frames are the same picture
    min_moving: float = 0.1  # share of frame-to-frame changes needed to not be frozen
    min_hand: float = 0.5  # share of frames with a hand

    def __post_init__(self):
        for name in ("min_voiced", "min_moving", "min_hand"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"QualityConfig.{name} must be a share between 0 and 1, got {getattr(self, name)}")


def _pitch_frames(samples: np.ndarray, frame_s: float = 0.04) -> np.ndarray:
    """Every other 40 ms frame of the back-to-back frames of 16 kHz ``samples``: a share needs no more,
    and it halves the cost."""
    x = np.asarray(samples, np.float32)
    n = int(frame_s * SAMPLE_RATE)
    return x[:len(x) // n * n].reshape(-1, n)[::2]


def _voiced(frames: np.ndarray, cfg: QualityConfig, f0_range: tuple[float, float] = (60.0, 400.0)) -> np.ndarray:
    """Per frame: a clear pitch period between ``f0_range`` (the normalised autocorrelation's peak over
    those lags above ``cfg.voicing``) in a frame louder than ``cfg.silence_db``. Each row on its own."""
    n = frames.shape[1]
    frames = frames - frames.mean(axis=1, keepdims=True)
    lo, hi = int(SAMPLE_RATE / f0_range[1]), int(SAMPLE_RATE / f0_range[0])
    size = 1 << (n + hi).bit_length()  # long enough that lags up to `hi` do not wrap around
    acf = scipy.fft.irfft(np.abs(scipy.fft.rfft(frames, size, axis=1)) ** 2, size, axis=1)
    lags = np.arange(lo, hi + 1)
    peak = (acf[:, lo:hi + 1] * (n / (n - lags))[None]).max(axis=1)  # unbiased: longer lags overlap less
    energy = acf[:, 0]
    loud = 10 * np.log10(energy / n + 1e-12) > cfg.silence_db
    return loud & (peak > cfg.voicing * np.maximum(energy, 1e-12))


def enough_voice(samples: np.ndarray, cfg: QualityConfig = QualityConfig(), batch: int = 12) -> bool:
    """Whether the share of voiced frames (``_voiced`` over ``_pitch_frames``; 0 without a frame) reaches
    ``cfg.min_voiced``, looking at ``batch`` frames at a time and stopping as soon as the rest cannot
    change it (a sustained vowel: after the first batch; the live engine asks this of every window)."""
    frames = _pitch_frames(samples)
    total, count = len(frames), 0
    if total == 0:
        return 0.0 >= cfg.min_voiced
    for s in range(0, total, batch):
        count += int(_voiced(frames[s:s + batch], cfg).sum())
        if count / total >= cfg.min_voiced:
            return True
        if (count + total - min(s + batch, total)) / total < cfg.min_voiced:
            return False
    return count / total >= cfg.min_voiced


def audio_quality(samples: np.ndarray, cfg: QualityConfig = QualityConfig()) -> str:
    if rms_db(samples) < cfg.silence_db:
        return "silence"
    if not enough_voice(samples, cfg):
        return "no_voice"
    return "ok"


def video_quality(frames: np.ndarray, cfg: QualityConfig = QualityConfig()) -> str:
    """``frames``: (T, H, W, 3) uint8, the window's frames as the model sees them. Looks at the green
    channel of every 4th pixel each way: enough to see darkness and any change, for little CPU."""
    g = frames[:, ::4, ::4, 1].reshape(len(frames), -1).astype(np.int16)
    level = g.mean(axis=1)
    if np.mean(level < cfg.black_level) > 0.5:
        return "black"
    if len(frames) > 1:
        change = np.abs(np.diff(g, axis=0)).mean(axis=1)
        if np.mean(change > cfg.still_level) < cfg.min_moving:
            return "frozen"
    return "ok"


def hand_quality(landmarks: np.ndarray, cfg: QualityConfig = QualityConfig()) -> str:
    """``landmarks``: (T, 21, 3), NaN where no hand was found."""
    seen = np.all(np.isfinite(landmarks[..., :2]), axis=(1, 2))
    return "ok" if seen.mean() >= cfg.min_hand else "no_hand"
