"""Clinical hand measures from a track of hand landmarks: rest tremor and finger tapping.

Input: (frames, 21, 2 or 3) landmarks in MediaPipe's order and normalisation (x / width, y / height; NaN
where no hand was found), the frame rate, and the picture's width / height. Gaps of a few frames are
filled linearly; a track with less than half its frames present gives NaN measures.

Rest tremor (the hand at rest, MDS-UPDRS 3.17): the hand's centre (mean of the 21 points) in palm lengths
(wrist to middle-finger base), slow drift removed; its power spectrum (Welch) gives

- ``tremor_band_share``: the share of the 1-12 Hz power in the parkinsonian rest-tremor band, 3.5-7.5 Hz;
- ``tremor_hz``: the frequency of the largest peak between 3 and 12 Hz;
- ``tremor_amplitude``: the root-mean-square movement in the 3.5-7.5 Hz band, in palm lengths (so that
  neither the camera's distance nor the picture's size changes it).

Finger tapping (MDS-UPDRS 3.4: tap the index finger on the thumb, quickly and widely): the opening angle
at the wrist between the thumb tip and the index tip, in degrees (the finger-tapping data of Islam et al.
2023 report their amplitudes in this range, median about 28 degrees); each tap is an opening peak (no
smoothing here, which would shave the peaks of fast taps: filter detector jitter upstream, e.g. with
``features.landmarks.one_euro``), and

- ``num_peaks``, ``period_median`` / ``period_mean`` / ``period_stdev`` (s), ``frequency_median`` (Hz),
  ``period_cv`` (aperiodicity: standard deviation over mean of the periods);
- ``amplitude_median`` / ``amplitude_mean`` / ``amplitude_stdev`` (degrees: each peak above the trough
  before it);
- ``amplitude_decrement_slope`` (degrees per tap, from a straight line through the amplitudes: negative
  when taps shrink), ``amplitude_decrement_last_to_first_half`` (per cent lost from the first half's mean
  amplitude to the second's: positive when taps shrink), ``frequency_slope`` (Hz per second);
- ``num_interruptions`` (intervals longer than twice the median period) and ``num_freezes`` (longer
  than four times), ``max_freeze`` (s);
- ``speed_median`` / ``speed_max`` (degrees per second of the opening angle);
- ``wrist_movement``: the wrist's standard deviation around its median position, in palm lengths.
"""

from __future__ import annotations

import numpy as np

TREMOR_NAMES = ("tremor_band_share", "tremor_hz", "tremor_amplitude")
TAPPING_NAMES = ("num_peaks", "period_median", "period_mean", "period_stdev", "frequency_median", "period_cv",
                 "amplitude_median", "amplitude_mean", "amplitude_stdev", "amplitude_decrement_slope",
                 "amplitude_decrement_last_to_first_half", "frequency_slope", "num_interruptions", "num_freezes",
                 "max_freeze", "speed_median", "speed_max", "wrist_movement")


def _filled(xy: np.ndarray) -> np.ndarray | None:
    """(T, ...) with NaN frames filled linearly; None when fewer than half the frames are present."""
    present = np.all(np.isfinite(xy.reshape(len(xy), -1)), axis=1)
    if present.sum() < max(4, len(xy) / 2):
        return None
    idx = np.arange(len(xy))
    flat = xy.reshape(len(xy), -1).copy()
    for j in range(flat.shape[1]):
        flat[:, j] = np.interp(idx, idx[present], flat[present, j])
    return flat.reshape(xy.shape)


def _xy(landmarks: np.ndarray, aspect: float) -> np.ndarray:
    kp = np.asarray(landmarks, np.float64)
    if kp.ndim != 3 or kp.shape[1] != 21 or kp.shape[2] < 2:
        raise ValueError(f"expected landmarks of shape (frames, 21, 2 or 3), got {kp.shape}")
    return kp[..., :2] * np.array([aspect, 1.0])


def _palm(xy: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(xy[:, 9] - xy[:, 0], axis=1)))


def tremor_measures(landmarks: np.ndarray, fps: float, aspect: float = 4 / 3) -> dict[str, float]:
    out = dict.fromkeys(TREMOR_NAMES, float("nan"))
    xy = _filled(_xy(landmarks, aspect))
    if xy is None or len(xy) < fps:
        return out
    palm = _palm(xy)
    if palm <= 1e-6:
        return out
    centre = xy.mean(axis=1) / palm  # (T, 2)
    k = max(3, int(round(fps / 2)) | 1)  # remove drift slower than about 2 Hz
    drift = np.stack([np.convolve(np.pad(c, k // 2, mode="edge"), np.ones(k) / k, mode="valid") for c in centre.T], 1)
    move = centre - drift
    from scipy.signal import welch  # here: importing scipy.signal costs every process ~50 MB

    f, p = welch(move, fs=fps, nperseg=min(len(move), int(4 * fps)), axis=0)
    p = p.sum(axis=1)
    total = p[(f >= 1) & (f <= 12)].sum()
    band = (f >= 3.5) & (f <= 7.5)
    if total <= 0:
        return out
    search = (f >= 3) & (f <= 12)
    df = f[1] - f[0]
    return {"tremor_band_share": float(p[band].sum() / total),
            "tremor_hz": float(f[search][np.argmax(p[search])]),
            "tremor_amplitude": float(np.sqrt(p[band].sum() * df))}


def opening_angle(landmarks: np.ndarray, aspect: float = 4 / 3) -> np.ndarray:
    """(T,) angle at the wrist between the thumb tip (4) and the index tip (8), degrees; NaN without a hand."""
    xy = _xy(landmarks, aspect)
    a, b = xy[:, 4] - xy[:, 0], xy[:, 8] - xy[:, 0]
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def tapping_measures(landmarks: np.ndarray, fps: float, aspect: float = 4 / 3) -> dict[str, float]:
    out = dict.fromkeys(TAPPING_NAMES, float("nan"))
    xy = _filled(_xy(landmarks, aspect))
    if xy is None:
        return out
    angle = opening_angle(xy, 1.0)
    spread = np.percentile(angle, 95) - np.percentile(angle, 5)
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(angle, distance=max(1, int(0.1 * fps)), prominence=max(3.0, 0.25 * spread))
    out["num_peaks"] = float(len(peaks))
    speed = np.abs(np.diff(angle)) * fps
    out["speed_median"], out["speed_max"] = float(np.median(speed)), float(np.max(speed))
    palm = _palm(xy)
    wrist = xy[:, 0] / max(palm, 1e-6)
    out["wrist_movement"] = float(np.sqrt(np.mean(np.sum((wrist - np.median(wrist, axis=0)) ** 2, axis=1))))
    if len(peaks) < 3:
        return out
    times = peaks / fps
    periods = np.diff(times)
    troughs = [int(np.argmin(angle[a:b])) + a for a, b in zip(np.r_[0, peaks[:-1]], peaks)]
    amps = angle[peaks] - angle[troughs]
    med = float(np.median(periods))
    out.update(period_median=med, period_mean=float(periods.mean()), period_stdev=float(periods.std()),
               frequency_median=float(np.median(1 / periods)), period_cv=float(periods.std() / periods.mean()),
               amplitude_median=float(np.median(amps)), amplitude_mean=float(amps.mean()),
               amplitude_stdev=float(amps.std()),
               amplitude_decrement_slope=float(np.polyfit(np.arange(len(amps)), amps, 1)[0]),
               frequency_slope=float(np.polyfit(times[1:], 1 / periods, 1)[0]),
               num_interruptions=float(np.sum(periods > 2 * med)), num_freezes=float(np.sum(periods > 4 * med)),
               max_freeze=float(max([p for p in periods if p > 4 * med], default=0.0)))
    half = len(amps) // 2
    first, last = amps[:half].mean(), amps[len(amps) - half:].mean()
    out["amplitude_decrement_last_to_first_half"] = float(100 * (first - last) / first) if first > 0 else float("nan")
    return out
