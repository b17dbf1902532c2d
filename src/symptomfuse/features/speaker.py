"""A pretrained voice embedding: Resemblyzer's GE2E speaker encoder (256-d), frozen.

The weights ship inside the ``resemblyzer`` wheel (Apache-2.0; Wan et al. 2018, "Generalized end-to-end
loss for speaker verification", trained on thousands of speakers). Install it with ``pip install
--no-deps resemblyzer==0.1.4`` (``make install`` does). This module never imports resemblyzer (its
import pulls in a VAD this package does not use): it finds ``resemblyzer/pretrained.pt`` through the
package's installed-file list, checks its SHA-256, reads it with ``torch.load(weights_only=True)`` (no
unpickling of code) and rebuilds the same network: a 3-layer LSTM over 40-band mel power frames (25 ms
windows every 10 ms at 16 kHz, as ``resemblyzer.audio.wav_to_mel_spectrogram`` computes them with
librosa; ``mel_frames`` writes the same out with numpy and librosa's filterbank), a linear layer, ReLU,
L2 normalisation. Nothing is downloaded.

A window of sound is brought to -30 dBFS (as Resemblyzer's preprocessing does; no voice-activity trimming,
which would cut sustained vowels), cut into partial utterances of 160 frames (1.6 s) every 80 frames,
embedded, averaged and L2-normalised, as ``VoiceEncoder.embed_utterance`` does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from symptomfuse.wheels import wheel_file

SAMPLE_RATE = 16000
N_MELS, PARTIAL, STEP, DIM = 40, 160, 80, 256
N_FFT, HOP = 400, 160  # 25 ms windows every 10 ms, as Resemblyzer's
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # resemblyzer 0.1.4
TARGET_DBFS = -30.0


def weights_path() -> Path:
    """``pretrained.pt`` of the installed resemblyzer wheel, its SHA-256 checked."""
    return wheel_file("resemblyzer", "0.1.4", "pretrained.pt", WEIGHTS_SHA256, "the GE2E voice embedding")


class GE2E(nn.Module):
    """Resemblyzer's speaker encoder network (inference only)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, DIM, 3, batch_first=True)
        self.linear = nn.Linear(DIM, DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        e = torch.relu(self.linear(hidden[-1]))
        return e / torch.norm(e, dim=1, keepdim=True).clamp_min(1e-12)


@lru_cache(maxsize=1)
def encoder() -> GE2E:
    """The frozen network, loaded once per process."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    net = GE2E()
    net.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return net.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def _mel_basis() -> tuple[np.ndarray, np.ndarray]:
    """librosa's Slaney mel filterbank (40 bands, 0-8 kHz) for 400-point FFTs, and the periodic Hann
    window. Only ``librosa.filters`` is imported: the whole of librosa compiles numba code for about 35 s
    on a fresh install."""
    from librosa.filters import mel
    from scipy.signal import get_window

    return (mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32),
            get_window("hann", N_FFT, fftbins=True).astype(np.float32))


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power frames as Resemblyzer computes them: ``librosa.feature.melspectrogram(y,
    sr=16000, n_fft=400, hop_length=160, n_mels=40)`` (centred frames, zero padding, a periodic Hann
    window, power 2), written out with numpy: equal within float32 rounding (measured: at most 5e-7
    relative)."""
    basis, window = _mel_basis()
    y = np.pad(np.asarray(samples, np.float32), N_FFT // 2)
    if len(y) < N_FFT:
        return np.zeros((0, N_MELS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power.astype(np.float32) @ basis.T).astype(np.float32)


def speaker_embedding(samples: np.ndarray) -> np.ndarray:
    """The 256-d GE2E embedding of a stretch of sound at 16 kHz (float32); zeros for silence."""
    x = np.asarray(samples, np.float64)
    power = float(np.mean(x ** 2)) if len(x) else 0.0
    if power <= 1e-12:
        return np.zeros(DIM, np.float32)
    x = x * 10 ** ((TARGET_DBFS - 10 * np.log10(power)) / 20)
    mel = mel_frames(x)
    if len(mel) < PARTIAL:
        mel = np.pad(mel, ((0, PARTIAL - len(mel)), (0, 0)))
    starts = list(range(0, len(mel) - PARTIAL + 1, STEP))
    if starts[-1] + PARTIAL < len(mel):
        starts.append(len(mel) - PARTIAL)
    with torch.inference_mode():
        parts = encoder()(torch.from_numpy(np.stack([mel[s:s + PARTIAL] for s in starts]))).numpy()
    e = parts.mean(axis=0)
    return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)
