"""Clinical voice measures of a sustained vowel (or any voiced speech), one vector per window.

Praat (through praat-parselmouth) finds the glottal cycles and gives the classical perturbation measures
with its standard settings (period floor 0.1 ms, ceiling 20 ms, maximum period factor 1.3, maximum
amplitude factor 1.6), as in the MDVP-style tables of Little et al. (UCI Parkinsons):

- F0: mean, standard deviation, minimum and maximum of the voiced pitch (Hz);
- jitter: local (a fraction), local absolute (s), RAP, PPQ5 and DDP (= 3 RAP);
- shimmer: local (a fraction), local in dB, APQ3, APQ5, APQ11 and DDA (= 3 APQ3);
- HNR (dB, mean harmonicity of the voiced frames) and NHR (mean noise-to-harmonics power ratio of
  those frames, ``10^(-HNR/10)``);

and the nonlinear measures, written here after their definitions:

- RPDE (Little et al. 2007): the normalised entropy of the recurrence periods of the signal's
  time-delay embedding (how periodic the vibration is: 0 perfectly periodic, 1 white noise);
- DFA (Little et al. 2007): the scaling exponent of detrended fluctuation analysis of the signal
  (turbulent, noisy breath raises it);
- PPE (Little et al. 2009): the normalised entropy of the pitch in semitones after a linear-prediction
  whitening filter removes smooth variation (vibrato, drift), so that only the irregular part counts;

and the mean and standard deviation of 13 MFCCs (the DCT of this package's log-mel spectrogram).

A window without enough voiced cycles gets NaN for the measures that need them; the ``mlp`` encoder and
the baselines impute NaN with training statistics and see a missingness indicator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dct

from symptomfuse.features.audio import LogMelConfig, log_mel

_PERIOD = (0.0, 0.0, 0.0001, 0.02, 1.3)  # time range (all), shortest and longest period (s), max period factor
_N_MFCC = 13

NAMES = (("f0_mean", "f0_std", "f0_min", "f0_max",
          "jitter_local", "jitter_local_abs", "jitter_rap", "jitter_ppq5", "jitter_ddp",
          "shimmer_local", "shimmer_local_db", "shimmer_apq3", "shimmer_apq5", "shimmer_apq11", "shimmer_dda",
          "hnr", "nhr", "rpde", "dfa", "ppe")
         + tuple(f"mfcc{i}_mean" for i in range(_N_MFCC)) + tuple(f"mfcc{i}_std" for i in range(_N_MFCC)))


@dataclass(frozen=True)
class VoiceConfig:
    f0_min: float = 75.0  # pitch floor (Hz)
    f0_max: float = 500.0  # pitch ceiling (Hz)
    sample_rate: int = 16000


def voice_measures(samples: np.ndarray, cfg: VoiceConfig = VoiceConfig()) -> np.ndarray:
    """The measures ``NAMES`` of one stretch of sound (float samples at ``cfg.sample_rate``), float64."""
    import parselmouth
    from parselmouth.praat import call

    x = np.asarray(samples, np.float64)
    out = np.full(len(NAMES), np.nan)
    mfcc = mfcc_stats(x, cfg.sample_rate)
    out[len(NAMES) - 2 * _N_MFCC:] = mfcc
    if len(x) < cfg.sample_rate * 0.1 or not np.any(x):
        return out
    sound = parselmouth.Sound(x, sampling_frequency=cfg.sample_rate)
    pitch = sound.to_pitch(pitch_floor=cfg.f0_min, pitch_ceiling=cfg.f0_max)
    f0 = pitch.selected_array["frequency"]
    f0 = f0[f0 > 0]
    if len(f0) >= 3:
        out[0:4] = f0.mean(), f0.std(), f0.min(), f0.max()
    points = call(sound, "To PointProcess (periodic, cc)", cfg.f0_min, cfg.f0_max)
    if call(points, "Get number of points") < 2:
        periods = np.zeros(0)
    else:  # the cycles' times, as one array
        periods = np.diff(np.asarray(call(points, "To Matrix").values, np.float64).ravel())
    periods = periods[(periods >= 1 / cfg.f0_max) & (periods <= 1 / cfg.f0_min)]
    out[19] = pitch_period_entropy(1 / periods) if len(periods) else np.nan
    if call(points, "Get number of periods", 0.0, 0.0, *_PERIOD[2:]) >= 3:
        for i, kind in enumerate(("local", "local, absolute", "rap", "ppq5", "ddp")):
            out[4 + i] = call(points, f"Get jitter ({kind})", *_PERIOD)
        for i, kind in enumerate(("local", "local_dB", "apq3", "apq5", "apq11", "dda")):
            out[9 + i] = call([sound, points], f"Get shimmer ({kind})", *_PERIOD, 1.6)
    harmonicity = call(sound, "To Harmonicity (cc)", 0.01, cfg.f0_min, 0.1, 1.0)
    h = harmonicity.values[0]
    h = h[h > -199]  # Praat marks unvoiced frames with -200 dB
    if len(h):
        out[15], out[16] = h.mean(), np.mean(10 ** (-h / 10))
    out[17] = rpde(x, cfg.sample_rate)
    out[18] = dfa(x, cfg.sample_rate)
    return out


def mfcc_stats(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean and standard deviation over time of 13 MFCCs (DCT-II of the log-mel spectrogram)."""
    cfg = LogMelConfig(sample_rate=sample_rate, n_mels=40)
    if cfg.frames(len(x)) == 0:
        return np.full(2 * _N_MFCC, np.nan)
    mel = log_mel(np.asarray(x, np.float32), cfg)  # (n_mels, frames), dB
    c = dct(mel, type=2, norm="ortho", axis=0)[:_N_MFCC]
    return np.concatenate([c.mean(axis=1), c.std(axis=1)])


def pitch_period_entropy(f0_hz: np.ndarray, bins: int = 30, span: float = 1.5) -> float:
    """PPE (Little et al. 2009): the pitch of each glottal cycle in semitones, whitened by a 2nd-order
    linear predictor fitted to it (smooth vibrato and drift are predictable, irregular variation is not),
    and the entropy of the residual's distribution over ``bins`` equal bins spanning +-``span`` semitones,
    divided by log(bins)."""
    s = 12 * np.log2(np.asarray(f0_hz, np.float64) / 127.09)
    if len(s) < 8:
        return float("nan")
    s = s - s.mean()
    a = np.stack([s[1:-1], s[:-2]], axis=1)
    coef, *_ = np.linalg.lstsq(a, s[2:], rcond=None)
    resid = s[2:] - a @ coef
    counts, _ = np.histogram(np.clip(resid, -span, span), bins=bins, range=(-span, span))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(bins))


def rpde(x: np.ndarray, sample_rate: int, dim: int = 4, delay_s: float = 0.0014, radius: float = 0.12,
         t_max_s: float = 0.02, n_points: int = 400) -> float:
    """RPDE (Little et al. 2007). The signal, scaled to [-1, 1], is embedded in ``dim`` dimensions with
    delay ``delay_s``; from each of ``n_points`` evenly spread points the trajectory is followed until it
    leaves the ball of ``radius`` and then returns into it; the entropy of the distribution of these
    recurrence times (1 .. t_max samples), divided by log(t_max), is returned."""
    x = np.asarray(x, np.float64)
    peak = np.max(np.abs(x))
    if peak == 0:
        return float("nan")
    x = x / peak
    tau, t_max = max(1, int(round(delay_s * sample_rate))), max(2, int(round(t_max_s * sample_rate)))
    n = len(x) - (dim - 1) * tau
    if n <= t_max + 1:
        return float("nan")
    emb = np.stack([x[i * tau:i * tau + n] for i in range(dim)], axis=1)
    starts = np.linspace(0, n - t_max - 1, min(n_points, n - t_max - 1)).astype(int)
    ahead = starts[:, None] + np.arange(1, t_max + 1)[None]  # (points, t_max)
    inside = np.linalg.norm(emb[ahead] - emb[starts][:, None], axis=2) < radius
    left = np.argmax(~inside, axis=1)  # first step outside the ball
    periods = []
    for row, first_out in zip(inside, left):
        if row[first_out]:
            continue  # never left within t_max
        back = np.flatnonzero(row[first_out:])
        if len(back):
            periods.append(first_out + back[0] + 1)
    if not periods:
        return float("nan")
    counts = np.bincount(periods, minlength=t_max + 1)[1:]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(t_max))


DFA_SCALES_S = tuple(n / 44100 for n in (50, 60, 70, 80, 90, 100))  # 50-100 samples at 44.1 kHz


def dfa(x: np.ndarray, sample_rate: int, scales_s: tuple[float, ...] = DFA_SCALES_S) -> float:
    """DFA (Little et al. 2007): the slope of log F(L) against log L, where F(L) is the root-mean-square
    deviation of the integrated, mean-removed signal from its straight-line fit in boxes of L samples;
    boxes of 1.1-2.3 ms (50-100 samples at the 44.1 kHz of the UCI recordings)."""
    scales = sorted({max(4, int(round(s * sample_rate))) for s in scales_s})
    x = np.asarray(x, np.float64)
    y = np.cumsum(x - x.mean())
    f = []
    for size in scales:
        boxes = len(y) // size
        if boxes < 2:
            return float("nan")
        seg = y[:boxes * size].reshape(boxes, size)
        t = np.arange(size) - (size - 1) / 2
        slope = seg @ t / (t @ t)
        resid = seg - seg.mean(axis=1, keepdims=True) - slope[:, None] * t
        f.append(np.sqrt(np.mean(resid ** 2)))
    f = np.asarray(f)
    if np.any(f <= 0):
        return float("nan")
    return float(np.polyfit(np.log(scales), np.log(f), 1)[0])
