"""A sustained vowel /a/ from a glottal-pulse source and a formant filter.

The source is a train of Rosenberg glottal-flow pulses, one per cycle. Each cycle's period and amplitude
carry small random perturbations (jitter, shimmer) that every voice has; the condition enlarges them,
adds aspiration noise (lower harmonics-to-noise ratio) and a slow 4-7 Hz vocal tremor that modulates
F0 and loudness. The flow is passed through a cascade of second-order formant resonators and a
first-difference lip-radiation filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

# Formants of /a/ for an adult male vocal tract (Hz) and their bandwidths; scaled per person.
_A_FORMANTS = np.array([730.0, 1090.0, 2440.0, 3400.0])
_A_BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])


@dataclass(frozen=True)
class VoiceParams:
    """Generative parameters of one person's sustained vowel."""

    f0_hz: float  # mean fundamental frequency
    formant_scale: float  # vocal-tract length factor (about 1.0 male, 1.15-1.2 female)
    jitter: float  # s.d. of the relative cycle-to-cycle period perturbation
    shimmer: float  # s.d. of the relative cycle-to-cycle amplitude perturbation
    noise_ratio: float  # aspiration noise amplitude relative to the voiced flow (breathiness)
    tremor_hz: float  # vocal tremor rate (0 for none)
    tremor_depth: float  # relative F0 modulation depth of the tremor
    open_quotient: float  # fraction of the cycle the glottis is open


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order digital resonator (Klatt) with unit gain at DC."""
    c = -np.exp(-2.0 * np.pi * bandwidth / sr)
    b = 2.0 * np.exp(-np.pi * bandwidth / sr) * np.cos(2.0 * np.pi * freq / sr)
    a = 1.0 - b - c
    return np.array([a]), np.array([1.0, -b, -c])


def _rosenberg_pulse(n: int, open_quotient: float) -> np.ndarray:
    """One period of Rosenberg glottal flow, ``n`` samples long."""
    t = np.arange(n) / n
    tp = 0.65 * open_quotient  # opening phase
    tn = 0.35 * open_quotient  # closing phase
    flow = np.zeros(n)
    rise = t < tp
    flow[rise] = 0.5 * (1.0 - np.cos(np.pi * t[rise] / tp))
    fall = (t >= tp) & (t < tp + tn)
    flow[fall] = np.cos(0.5 * np.pi * (t[fall] - tp) / tn)
    return flow


def synth_vowel(
    p: VoiceParams,
    duration_s: float,
    sr: int,
    rng: np.random.Generator,
    onset_s: float = 0.3,
    offset_s: float = 0.3,
) -> np.ndarray:
    """Render a sustained /a/ of ``duration_s`` seconds (silence before ``onset_s`` and after
    ``duration_s - offset_s``) as float32 samples in [-1, 1]."""
    n_total = int(round(duration_s * sr))
    voiced_start = int(round(onset_s * sr))
    voiced_end = n_total - int(round(offset_s * sr))
    flow = np.zeros(n_total + sr // 20)
    envelope = np.zeros_like(flow)

    tremor_phase = rng.uniform(0, 2 * np.pi)
    drift_phase = rng.uniform(0, 2 * np.pi)
    drift_rate = rng.uniform(0.15, 0.4)  # slow, natural intonation drift (Hz)
    pos = voiced_start
    while pos < voiced_end:
        t = pos / sr
        tremor = np.sin(2 * np.pi * p.tremor_hz * t + tremor_phase) if p.tremor_hz > 0 else 0.0
        f0 = p.f0_hz * (1.0 + 0.012 * np.sin(2 * np.pi * drift_rate * t + drift_phase)
                        + p.tremor_depth * tremor)
        period = max(8, int(round(sr / f0 * (1.0 + p.jitter * rng.standard_normal()))))
        amp = (1.0 + 8.0 * p.tremor_depth * tremor) * (1.0 + p.shimmer * rng.standard_normal())
        flow[pos:pos + period] += max(amp, 0.05) * _rosenberg_pulse(period, p.open_quotient)
        envelope[pos:pos + period] = 1.0
        pos += period

    # Aspiration noise, pulsed with the glottal opening, gives the breathiness.
    noise = rng.standard_normal(flow.shape[0]) * (0.3 + flow) * envelope
    source = flow + p.noise_ratio * noise

    # Onset and offset ramps so that the vowel starts and ends smoothly.
    ramp = int(0.05 * sr)
    gain = np.ones_like(source)
    gain[:voiced_start] = 0.0
    gain[voiced_start:voiced_start + ramp] = np.linspace(0, 1, ramp)
    gain[voiced_end - ramp:voiced_end] = np.linspace(1, 0, ramp)
    gain[voiced_end:] = 0.0
    signal = np.diff(source * gain, prepend=0.0)  # lip radiation

    for freq, bw in zip(_A_FORMANTS * p.formant_scale, _A_BANDWIDTHS):
        b, a = _resonator(min(freq, 0.45 * sr), bw, sr)
        signal = lfilter(b, a, signal)

    signal = signal[:n_total]
    signal = 0.5 * signal / (np.max(np.abs(signal)) + 1e-12)
    signal += 10 ** (-65 / 20) * rng.standard_normal(n_total)  # room noise floor
    return np.clip(signal, -1.0, 1.0).astype(np.float32)
