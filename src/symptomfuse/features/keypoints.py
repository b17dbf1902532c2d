"""Keypoint features: the one function that turns a window of hand landmarks into model input.

Landmarks arrive as (frames, 21, 2 or 3) arrays normalised like MediaPipe's (x / width, y / height), from
the synthetic ground truth or from a landmark detector; frames with no hand are NaN. Per window the hand
is centred on its mean palm position and scaled by its median palm length, so that neither where the
hand is nor how near the camera changes the features, while its motion within the window (tremor,
tapping) is kept. Each frame gives positions, velocities and accelerations of the 21 points in palm
lengths (per second, per second squared) and a presence flag.
"""

from __future__ import annotations

import numpy as np

N_LANDMARKS = 21
PALM = [0, 5, 9, 13, 17]  # wrist and the four finger bases
FEATURES_PER_FRAME = N_LANDMARKS * 2 * 3 + 1


def keypoint_features(landmarks: np.ndarray, fps: float, aspect: float) -> np.ndarray:
    """(frames, 21, >=2) normalised landmarks -> (frames, 127) float32 features.

    ``aspect`` is the image's width / height, so that x and y are measured in the same units.
    """
    kp = np.asarray(landmarks, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != N_LANDMARKS or kp.shape[2] < 2:
        raise ValueError(f"expected landmarks of shape (frames, 21, 2 or 3), got {kp.shape}")
    xy = kp[..., :2] * np.array([aspect, 1.0])
    present = np.all(np.isfinite(xy), axis=(1, 2))
    out = np.zeros((len(kp), FEATURES_PER_FRAME), np.float32)
    if present.sum() < 2:
        return out
    seen = xy[present]
    centre = seen[:, PALM].mean(axis=(0, 1))
    scale = np.median(np.linalg.norm(seen[:, 9] - seen[:, 0], axis=1))
    if not np.isfinite(scale) or scale <= 1e-6:
        return out
    pos = np.where(present[:, None, None], (xy - centre) / scale, 0.0)
    # Differences only between consecutive frames that both have a hand.
    both = present[1:] & present[:-1]
    vel = np.zeros_like(pos)
    vel[1:] = np.where(both[:, None, None], (pos[1:] - pos[:-1]) * fps, 0.0)
    acc = np.zeros_like(pos)
    acc[2:] = np.where((both[1:] & both[:-1])[:, None, None], (vel[2:] - vel[1:-1]) * fps, 0.0)
    n = len(kp)
    out[:, :-1] = np.concatenate([pos.reshape(n, -1), vel.reshape(n, -1), acc.reshape(n, -1)], axis=1)
    out[:, -1] = present
    return out


def load_landmarks(path, n_source_frames: int | None = None) -> np.ndarray:
    """A .npy file of hand landmarks as float32 (frames, 21, 3); with ``n_source_frames``, checks that it
    has one entry per video frame (give or take one). Raises MediaError("bad_keypoints")."""
    from pathlib import Path

    from symptomfuse.data.media import MediaError

    path = Path(path)
    try:
        kp = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise MediaError("bad_keypoints", f"keypoint file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise MediaError("bad_keypoints", f"cannot read {path.name} as a NumPy .npy array: {exc}") from exc
    if kp.ndim != 3 or kp.shape[1] != N_LANDMARKS or kp.shape[2] not in (2, 3) or not np.issubdtype(kp.dtype, np.floating):
        raise MediaError("bad_keypoints", f"{path.name} has shape {kp.shape} {kp.dtype}; "
                                          "expected float (frames, 21, 2 or 3)")
    if n_source_frames is not None and abs(len(kp) - n_source_frames) > 1:
        raise MediaError("bad_keypoints", f"{path.name} has {len(kp)} frames but the video has {n_source_frames}")
    if kp.shape[2] == 2:
        kp = np.concatenate([kp, np.zeros(kp.shape[:2] + (1,), kp.dtype)], axis=2)
    return kp.astype(np.float32)
