"""Landmarks: MediaPipe finds a real face, the One-Euro filter calms jitter without delaying movement."""

from pathlib import Path

import numpy as np
import pytest

from symptomfuse.errors import UsageError
from symptomfuse.features.landmarks import POINTS, make, one_euro, track

GRID_CLIP = Path(__file__).resolve().parents[1] / "data" / "grid" / "sbwe5n.mpg"  # shipped (CC BY 4.0)


def test_one_euro_calms_still_jitter_and_follows_a_movement():
    rng = np.random.default_rng(0)
    still = 0.5 + rng.normal(0, 0.002, (100, 2))
    out = one_euro(still, 25.0)
    assert np.std(out[10:], axis=0).max() < np.std(still, axis=0).min() / 2.5
    step = np.r_[np.zeros(50), np.ones(50)][:, None]  # a fast movement: followed within a few frames
    assert one_euro(step, 25.0, beta=5.0)[55, 0] > 0.9
    gap = still.copy()
    gap[40:45] = np.nan  # not found: stays NaN, and the filter starts again after
    f = one_euro(gap, 25.0)
    assert np.isnan(f[40:45]).all() and np.isfinite(f[45:]).all()


def test_unknown_landmarks_are_refused():
    with pytest.raises(UsageError, match="available"):
        make("feet")


def test_facemesh_finds_every_frame_of_a_real_talking_face():
    import av

    with av.open(str(GRID_CLIP)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][:25]
    lm = track(frames, "face")
    assert lm.shape == (25, POINTS["face"], 3) and np.isfinite(lm).all()
    assert 0.2 < np.median(lm[:, :, 0]) < 0.8 and 0.2 < np.median(lm[:, :, 1]) < 0.8  # on the face
    assert np.isnan(track([np.zeros((120, 160, 3), np.uint8)] * 3, "face")).all()  # no face: NaN
