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


def test_a_still_face_has_blendshape_ranges_near_zero():
    """The first GRID frame held for 3 s: the same coefficients every frame (tracking smooths them a
    little), so every range is near 0, while the talking clip's jaw moves."""
    import av

    from symptomfuse.modalities.blendshapes import NAMES, blendshape_stats

    with av.open(str(GRID_CLIP)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    still = dict(zip(NAMES, blendshape_stats(track([frames[0]] * 75, "blendshapes"))))
    talking = dict(zip(NAMES, blendshape_stats(track(frames, "blendshapes"))))
    assert still["face_present"] == 1.0
    assert max(v for n, v in still.items() if n.endswith("_range")) < 0.05  # measured: 0.03 at most
    assert talking["jawOpen_range"] > 5 * max(still["jawOpen_range"], 0.01)


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


def test_curation_finds_hand_landmarks_with_the_live_engines_extractor(cohort, tmp_path):
    """curate --hand-landmarks mediapipe: no keypoints column needed; the landmarks cached for each frame
    are those MediaPipe Hands (``features.landmarks``, as the live engine runs it) gives on the same decoded
    frames at full size; and the setting is in the feature contract and the cache key."""
    import json

    import av
    import pandas as pd

    from symptomfuse.cli import main
    from symptomfuse.data.cache import FeatureCache

    rows = pd.read_csv(cohort / "manifest.csv").head(2)[["path", "person_id", "label"]]
    rows["path"] = [str(cohort / p) for p in rows.path]
    rows.to_csv(tmp_path / "m.csv", index=False)  # no keypoints column
    base = ["curate", str(tmp_path / "m.csv"), "--labels", "healthy,parkinsons", "--modalities", "keypoints",
            "--workers", "1"]
    assert main([*base, "--out", str(tmp_path / "file")]) != 0  # from files, the rows give no landmarks
    assert set(pd.read_csv(tmp_path / "file" / "quarantine.csv").reason) == {"missing_field"}
    assert main([*base, "--out", str(tmp_path / "mp"), "--hand-landmarks", "mediapipe"]) == 0
    contract = json.loads((tmp_path / "mp" / "contract.json").read_text())
    assert contract["modalities"]["keypoints"]["settings"] == {"source": "mediapipe"}
    recs = pd.read_csv(tmp_path / "mp" / "recordings.csv")
    cache = FeatureCache(tmp_path / "mp" / "cache")
    for rec in recs.itertuples():
        cached = cache.load(rec.cache_key)["keypoints_landmarks"]
        with av.open(str(cohort / pd.read_csv(cohort / "manifest.csv").path[rec.Index])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        expected = track(frames, "hands")  # 25 fps in, 25 fps out: one cached row per decoded frame
        assert cached.shape == (len(frames), POINTS["hands"], 3)
        np.testing.assert_array_equal(cached, expected)
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "bad"), "--modalities", "keypoints",
                 "--labels", "healthy,parkinsons", "--hand-landmarks", "camera"]) == 2


@pytest.mark.parametrize("modality,kind", [("face_measures", "face"), ("face_blendshapes", "blendshapes")])
def test_face_tracks_are_curated_from_a_real_face_and_read_the_same_live(tmp_path, modality, kind):
    """curate --modalities face_measures (FaceMesh) or face_blendshapes (the Tasks FaceLandmarker) runs its
    model on each frame of a real talking face (GRID) and stores each window's vector: the feature
    function of that window's track, a face in every frame, values within human ranges. Live, the
    engine's detector of that kind gives the same vector, bit for bit."""
    import av
    import pandas as pd

    from symptomfuse.cli import main
    from symptomfuse.contract import FeatureContract
    from symptomfuse.data.cache import FeatureCache

    pd.DataFrame([{"path": str(GRID_CLIP), "person_id": "S1", "label": "healthy"}]).to_csv(tmp_path / "m.csv", index=False)
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c"), "--labels", "healthy,parkinsons",
                 "--modalities", modality, "--workers", "1"]) == 0
    rec = pd.read_csv(tmp_path / "c" / "recordings.csv").iloc[0]
    got = np.asarray(FeatureCache(tmp_path / "c" / "cache").load(rec.cache_key)[modality])
    mod = FeatureContract.load(tmp_path / "c").modality(modality)
    assert got.shape == (1, len(mod.NAMES))  # a 3-s clip: one window
    with av.open(str(GRID_CLIP)) as c:
        stream = c.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    np.testing.assert_array_equal(got[0], mod.window_features(track(frames, kind)[:75], size[0] / size[1]))
    v = dict(zip(mod.NAMES, got[0]))
    assert v["face_present"] == 1.0
    if modality == "face_measures":
        assert 0.15 < v["eye_opening"] < 0.4 and 0.3 < v["smile_width_mean"] < 0.8 and 0 <= v["blink_rate"] < 60
    else:  # a person talking: the jaw opens and closes; nobody puffs their cheeks
        assert v["jawOpen_range"] > 0.1 and v["cheekPuff_mean"] < 0.05
        assert np.all((got[0][1:] >= 0) & (got[0][1:] <= 1))

    # Live: the engine's face detector runs FaceMesh on each pushed frame into the face ring, and the
    # window's vector is the one curation stored.
    from symptomfuse.stream.buffers import SlotRing, Streams
    from symptomfuse.stream.engine import LandmarkDetector
    from symptomfuse.stream.quality import QualityConfig

    streams = Streams(25.0, 0.0, 10.0, QualityConfig())
    streams.aspect = size[0] / size[1]
    assert mod.live_window(streams, None, 0.0, True) == ("no_landmarks", None)
    found = LandmarkDetector(kind, streams.by_kind[kind], budget_s=10.0, keep_s=10.0)
    with av.open(str(GRID_CLIP)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            found.push(frame, k / 25)
    streams.by_kind[kind].close()
    quality, live = mod.live_window(streams, None, 0.0, True)
    assert quality == "ok" and len(found.seconds) == len(frames)
    np.testing.assert_array_equal(live[0], got[0])
    if modality != "face_measures":
        return
    starved = LandmarkDetector("face", SlotRing(25.0, 0.0, 250), budget_s=1e-6, keep_s=10.0)
    with av.open(str(GRID_CLIP)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            starved.push(frame, k / 25)
    assert len(starved.seconds) < 5 and starved.behind(0.0, 3.0, 75)  # over budget: frames skipped, and said


def test_a_busy_detector_holds_the_last_face_and_does_not_report_it_gone():
    """Live on a busy machine: each FaceMesh call takes 1.5 budgets (a fake clock), so every other frame is
    skipped, and FaceMesh itself loses the face in one detection of five. A skipped frame holds the last
    detection's landmarks: the window keeps a face in 4 frames of 5 and is "ok", neither "no_face" (as when
    a skipped frame counted as a frame without a face: 2 of 5) nor "landmarks_behind" (half, not more, was
    skipped)."""
    import itertools

    import av

    from symptomfuse.features.landmarks import missing
    from symptomfuse.modalities.face import FaceMeasures
    from symptomfuse.stream.buffers import Streams
    from symptomfuse.stream.engine import LandmarkDetector
    from symptomfuse.stream.quality import QualityConfig

    budget = 0.02
    ticks = itertools.count(step=1.5 * budget)  # a detection reads the clock before and after: 1.5 budgets
    streams = Streams(25.0, 0.0, 10.0, QualityConfig())
    found = LandmarkDetector("face", streams.face, budget_s=budget, keep_s=10.0, clock=lambda: next(ticks))
    facemesh, calls = found.extract, itertools.count()
    found.extract = lambda frame: missing("face") if next(calls) % 5 == 4 else facemesh(frame)
    with av.open(str(GRID_CLIP)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            found.push(frame, k / 25)
            streams.aspect = frame.width / frame.height
    streams.face.close()
    assert len(found.seconds) == 38 and len(found.skipped) == 37  # 75 frames: every other one detected
    assert not found.behind(0.0, 3.0, 75)
    quality, x = FaceMeasures().live_window(streams, None, 0.0, True)  # the default 3-s window at 25 fps
    assert quality == "ok", x
    # face_present: 31 of 38 detections found the face, each held over the skipped frame after it
    assert x[0, 0] == np.float32(61 / 75)
