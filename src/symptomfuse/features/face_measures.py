"""Facial measures of reduced expression (hypomimia) from a track of face landmarks.

Input: (frames, 478 or 468, 2 or 3) MediaPipe FaceMesh landmarks (x / width, y / height; NaN where no
face was found), the frame rate and the picture's width / height. Distances are divided by the distance
between the outer eye corners, so that neither the camera's distance nor the picture's size changes them.

- ``blink_rate``: blinks per minute. A blink is a dip of the eye aspect ratio (Soukupova and Cech 2016:
  the eyelids' distance over the eye's width, both eyes averaged) below 70% of the recording's median,
  lasting at most 0.5 s. People with Parkinson's blink less.
- ``eye_opening``: the median eye aspect ratio.
- ``mouth_opening_mean`` / ``mouth_opening_range``: the inner lips' distance (5th to 95th percentile range).
- ``smile_width_mean`` / ``smile_width_range`` / ``smile_width_std``: the mouth corners' distance, its
  5th-95th percentile range and standard deviation: how far and how much the mouth widens (the
  lip-corner pull, AU12, that UFNet's smile model leans on).
- ``expressivity``: the mean speed of the lip and eyebrow landmarks relative to the face (eye-corner
  distances per second), the head's own movement removed.
"""

from __future__ import annotations

import numpy as np

NAMES = ("blink_rate", "eye_opening", "mouth_opening_mean", "mouth_opening_range", "smile_width_mean",
         "smile_width_range", "smile_width_std", "expressivity")
LEFT_EYE = (33, 160, 158, 133, 153, 144)  # corner, upper lid x2, corner, lower lid x2
RIGHT_EYE = (362, 385, 387, 263, 373, 380)
EYE_CORNERS = (33, 263)
MOUTH_CORNERS = (61, 291)
INNER_LIPS = (13, 14)
MOVING = (61, 291, 13, 14, 0, 17, 70, 105, 107, 300, 334, 336)  # lips and eyebrows
RIGID = (6, 168, 197, 195, 4, 33, 263)  # nose bridge and tip, eye corners


def eye_aspect_ratio(xy: np.ndarray, eye: tuple) -> np.ndarray:
    p = [xy[:, i] for i in eye]
    vertical = np.linalg.norm(p[1] - p[5], axis=1) + np.linalg.norm(p[2] - p[4], axis=1)
    return vertical / (2 * np.linalg.norm(p[0] - p[3], axis=1))


def face_measures(landmarks: np.ndarray, fps: float, aspect: float = 4 / 3) -> dict[str, float]:
    out = dict.fromkeys(NAMES, float("nan"))
    kp = np.asarray(landmarks, np.float64)
    if kp.ndim != 3 or kp.shape[1] < 468 or kp.shape[2] < 2:
        raise ValueError(f"expected face landmarks of shape (frames, 468 or 478, 2 or 3), got {kp.shape}")
    xy = kp[..., :2] * np.array([aspect, 1.0])
    present = np.all(np.isfinite(xy.reshape(len(xy), -1)), axis=1)
    if present.sum() < max(3, len(xy) / 2):
        return out
    xy = xy[present]
    scale = np.linalg.norm(xy[:, EYE_CORNERS[0]] - xy[:, EYE_CORNERS[1]], axis=1)[:, None]
    ear = (eye_aspect_ratio(xy, LEFT_EYE) + eye_aspect_ratio(xy, RIGHT_EYE)) / 2
    closed = ear < 0.7 * np.median(ear)
    starts = np.flatnonzero(closed & ~np.r_[False, closed[:-1]])
    ends = np.flatnonzero(closed & ~np.r_[closed[1:], False])
    blinks = int(np.sum((ends - starts + 1) <= 0.5 * fps))
    mouth = np.linalg.norm(xy[:, INNER_LIPS[0]] - xy[:, INNER_LIPS[1]], axis=1) / scale[:, 0]
    smile = np.linalg.norm(xy[:, MOUTH_CORNERS[0]] - xy[:, MOUTH_CORNERS[1]], axis=1) / scale[:, 0]
    rel = (xy[:, MOVING] - xy[:, RIGID].mean(axis=1, keepdims=True)) / scale[:, :, None]
    speed = np.linalg.norm(np.diff(rel, axis=0), axis=2).mean() * fps if len(rel) > 1 else float("nan")
    p5, p95 = np.percentile(smile, [5, 95])
    m5, m95 = np.percentile(mouth, [5, 95])
    return {"blink_rate": 60.0 * blinks / (len(xy) / fps), "eye_opening": float(np.median(ear)),
            "mouth_opening_mean": float(mouth.mean()), "mouth_opening_range": float(m95 - m5),
            "smile_width_mean": float(smile.mean()), "smile_width_range": float(p95 - p5),
            "smile_width_std": float(smile.std()), "expressivity": float(speed)}
