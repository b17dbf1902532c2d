"""Audio features: the one log-mel function that both curation and live streaming call.

Input is a window of 16 kHz mono float32 samples; output is a (n_mels, frames) float32 log-mel
spectrogram in dB. Frames lie wholly inside the window (no padding), so the same samples always give the
same features, whether they came from a file or a microphone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    floor_db: float = -100.0

    def frames(self, n_samples: int) -> int:
        """Number of spectrogram frames for a window of ``n_samples`` samples."""
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop_length


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: LogMelConfig) -> np.ndarray:
    """Triangular HTK-style mel filters, shape (n_mels, n_fft // 2 + 1), each with unit area in Hz."""
    fft_hz = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.f_min), _hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None] - lower) / (centre - lower)
    falling = (upper - fft_hz[None]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (upper - lower))  # equal area, so loudness does not depend on band width
    bank.setflags(write=False)
    return bank.astype(np.float32)


@lru_cache(maxsize=8)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    w = np.zeros(n_fft, np.float32)
    offset = (n_fft - win_length) // 2
    w[offset:offset + win_length] = np.hanning(win_length + 1)[:-1]
    return w


def log_mel(samples: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Log-mel spectrogram (n_mels, frames) in dB of a 1-D float window of samples at ``cfg.sample_rate``."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects mono samples of shape (n,), got {x.shape}")
    n_frames = cfg.frames(len(x))
    if n_frames == 0:
        raise ValueError(f"window of {len(x)} samples is shorter than one frame ({cfg.win_length})")
    # each frame is n_fft samples around its win_length samples; the window is 0 outside them, so the
    # samples before the start and after the end that the first and last frames reach count as 0
    pad = (cfg.n_fft - cfg.win_length) // 2
    span = (n_frames - 1) * cfg.hop_length + cfg.n_fft
    padded = np.zeros(span, np.float32)
    padded[pad:pad + min(len(x), span - pad)] = x[:span - pad]
    strided = np.lib.stride_tricks.as_strided(padded, (n_frames, cfg.n_fft), (cfg.hop_length * 4, 4), writeable=False)
    frames = strided * _window(cfg.win_length, cfg.n_fft)
    power = np.abs(scipy.fft.rfft(frames, axis=1)) ** 2  # float32 in, float32 out
    mel = power @ mel_filterbank(cfg).T
    return np.maximum(10.0 * np.log10(np.maximum(mel, 1e-20)), cfg.floor_db).T.astype(np.float32)


def log_mel_windows(samples: np.ndarray, starts: np.ndarray, window: int,
                    cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Stack of ``log_mel(samples[s:s + window])`` for each start ``s`` (in samples): (n, n_mels, frames).

    Because frames never reach outside their window, when every start is a multiple of the hop the
    windows share frames; then the spectrogram is computed once over the span and sliced, which gives
    the same values as computing each window alone (up to float rounding) in a fraction of the time.
    """
    x = np.asarray(samples, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0:
        return np.zeros((0, cfg.n_mels, cfg.frames(window)), np.float32)
    if np.any(starts < 0) or np.any(starts + window > len(x)):
        raise ValueError("a window reaches outside the samples")
    if np.any(starts % cfg.hop_length):
        return np.stack([log_mel(x[s:s + window], cfg) for s in starts])
    first, last = int(starts.min()), int(starts.max()) + window
    whole = log_mel(x[first:last], cfg)
    n = cfg.frames(window)
    return np.stack([whole[:, (s - first) // cfg.hop_length:][:, :n] for s in starts])


def rms_db(samples: np.ndarray) -> float:
    """Loudness of a window in dBFS (for quality gating and summaries)."""
    x = np.asarray(samples, dtype=np.float64)
    return float(10.0 * np.log10(np.mean(x * x) + 1e-12))
