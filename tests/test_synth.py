"""The synthetic cohort: real media files, deterministic, with measurable signs of the condition."""

import hashlib
import json
import shutil
import subprocess

import av
import numpy as np
import pandas as pd
import parselmouth
import pytest
from parselmouth.praat import call
from scipy.signal import periodogram

from symptomfuse.synth.cohort import CONDITION, HEALTHY, SynthConfig, sample_people, synthesize
from symptomfuse.synth.hand import SceneParams, hand_trajectory, to_image_coords


def test_manifest_columns_and_people(cohort):
    m = pd.read_csv(cohort / "manifest.csv")
    assert {"path", "person_id", "label", "session", "keypoints"} <= set(m.columns)
    assert m.person_id.nunique() == 8
    assert (m.groupby("person_id").size() >= 2).all()
    assert set(m.label) == {HEALTHY, CONDITION}
    assert m.groupby("label").person_id.nunique().to_dict() == {HEALTHY: 4, CONDITION: 4}


def test_recording_is_standard_media(cohort):
    m = pd.read_csv(cohort / "manifest.csv")
    path = cohort / m.path[0]
    with av.open(str(path)) as c:
        (v,), (a,) = c.streams.video, c.streams.audio
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        fps = float(v.average_rate)
        assert fps >= 25
        assert v.codec_context.width >= 160 and v.codec_context.height >= 120
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
        rate = c.streams.audio[0].rate
    assert frames / fps >= 6.0
    assert samples / rate >= 6.0
    kp = np.load(cohort / m.keypoints[0], allow_pickle=False)
    assert kp.shape == (frames, 21, 3) and kp.dtype == np.float32
    # ffmpeg (a different demuxer and decoder front end) reads it without complaint too.
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed for this test: `make system-deps` installs it"
    run = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr.strip() == ""


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path):
    cfg = SynthConfig(people=2, seed=11, recordings_per_person=1, duration_s=6.0)
    synthesize(cfg, tmp_path / "a", workers=1, progress=False)
    synthesize(cfg, tmp_path / "b", workers=2, progress=False)
    synthesize(SynthConfig(people=2, seed=12, recordings_per_person=1, duration_s=6.0), tmp_path / "c",
               workers=1, progress=False)
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert a == b
    assert a["P001_s1.mp4"] != c["P001_s1.mp4"]


def test_phenotype_shares_are_honoured():
    people = sample_people(SynthConfig(people=48, seed=0))
    phen = pd.Series([p.phenotype for p in people]).value_counts().to_dict()
    # 24 with the condition split 35/35/30 with largest-remainder rounding: 8.4, 8.4, 7.2 -> 8, 9 or 9, 8, 7.
    assert phen["none"] == 24
    assert sorted([phen["voice"], phen["movement"]]) == [8, 9] and phen["both"] == 7


def _dominant_hz(landmarks_px: np.ndarray, fps: float):
    """Peak frequency (2-15 Hz) of hand motion, and its RMS amplitude in pixels within that band."""
    x = landmarks_px.reshape(len(landmarks_px), -1)
    f, p = periodogram(x, fs=fps, window="hann", detrend="linear", axis=0)
    p = p.sum(axis=1)
    band = (f >= 2) & (f <= 15)
    rms = np.sqrt(p[band].sum() * (f[1] - f[0]) / x.shape[1])
    return f[band][np.argmax(p[band])], rms


def _rest_motion(meta, landmarks):
    fps, rest = meta["fps"], meta["rest_until_s"]
    scene = meta["scene"]
    seg = landmarks[int(0.3 * fps):int((rest - 0.1) * fps), :, :2] * np.array([scene["width"], scene["height"]])
    return _dominant_hz(seg, fps)


def test_rest_tremor_frequency_from_written_keypoints(cohort):
    m = pd.read_csv(cohort / "manifest.csv")
    seen = {"movement": 0, "healthy": 0}
    for row in m.itertuples():
        meta = json.loads((cohort / row.path).with_suffix(".json").read_text())
        hz, rms = _rest_motion(meta, np.load(cohort / row.keypoints, allow_pickle=False))
        if meta["person"]["movement_severity"] > 0:
            assert 4.0 <= hz <= 6.0, (row.path, hz)
            seen["movement"] += 1
        elif row.label == HEALTHY:
            assert 8.0 <= hz <= 12.0 or rms < 0.3, (row.path, hz, rms)
            seen["healthy"] += 1
    assert seen["movement"] >= 2 and seen["healthy"] >= 4


def test_rest_tremor_frequency_across_a_full_cohort():
    """The same check on all 48 default people's trajectories (no rendering, so it is quick)."""
    cfg = SynthConfig(people=48, seed=0)
    scene = SceneParams(320, 240, 0.5, 0.9, 150.0, 0.0, (200, 160, 140), (100, 100, 100), 1.0, 3.0)
    for i, p in enumerate(sample_people(cfg)):
        traj = hand_trajectory(p.hand, 8.0, 25, 4.0, np.random.default_rng(i))
        kp = to_image_coords(traj, scene)
        hz, rms = _rest_motion({"fps": 25, "rest_until_s": 4.0, "scene": {"width": 320, "height": 240}}, kp)
        if p.movement_severity > 0:
            assert 4.0 <= hz <= 6.0 and rms > 0.3, (p.person_id, hz, rms)
        else:
            assert 8.0 <= hz <= 12.0 or rms < 0.3, (p.person_id, hz, rms)


def _tapping_rate(meta, landmarks):
    """Taps per second from the thumb-index distance during the tapping phase."""
    fps = meta["fps"]
    d = np.linalg.norm(landmarks[:, 4, :2] - landmarks[:, 8, :2], axis=1)
    seg = d[int((meta["rest_until_s"] + 0.6) * fps):]
    f, p = periodogram(seg, fs=fps, window="hann", detrend="linear")
    band = (f >= 0.8) & (f <= 8)
    return f[band][np.argmax(p[band])]


def test_tapping_is_slower_with_movement_signs(cohort):
    m = pd.read_csv(cohort / "manifest.csv")
    rates = {True: [], False: []}
    for row in m.itertuples():
        meta = json.loads((cohort / row.path).with_suffix(".json").read_text())
        rates[meta["person"]["movement_severity"] > 0].append(
            _tapping_rate(meta, np.load(cohort / row.keypoints, allow_pickle=False)))
    assert np.mean(rates[True]) < np.mean(rates[False])


def _jitter_local(path) -> float:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        x = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
    snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=rate)
    pp = call(snd, "To PointProcess (periodic, cc)", 75, 500)
    return call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)


def test_voice_signs_raise_jitter_in_the_decoded_audio(cohort):
    m = pd.read_csv(cohort / "manifest.csv")
    jit = {True: [], False: []}
    for row in m.itertuples():
        meta = json.loads((cohort / row.path).with_suffix(".json").read_text())
        if meta["person"]["voice_severity"] > 0 or row.label == HEALTHY:
            jit[meta["person"]["voice_severity"] > 0].append(_jitter_local(cohort / row.path))
    assert len(jit[True]) >= 2 and len(jit[False]) >= 4
    assert np.mean(jit[True]) > 1.5 * np.mean(jit[False])
    assert 0.001 < np.median(jit[False]) < 0.008  # healthy voices have natural, small jitter


@pytest.mark.parametrize("bad", [dict(people=1), dict(duration_s=4.0), dict(fps=15), dict(width=100),
                                 dict(phenotypes={"voice": 0.5, "movement": 0.6, "both": 0.0})])
def test_config_is_validated(bad, tmp_path):
    with pytest.raises(ValueError):
        synthesize(SynthConfig(**bad), tmp_path, progress=False)


def _renderers_near_every_edge(cfg: SynthConfig):
    """A renderer and a recording's landmarks for each of the cohort's people, the wrist moved near the
    left edge, the middle or the right edge, and low, lower or below the picture, in turn."""
    from symptomfuse.synth.cohort import _session_params
    from symptomfuse.synth.hand import HandRenderer

    for i, person in enumerate(sample_people(cfg)):
        rng = np.random.default_rng([cfg.seed, 2, i, 1])
        _, scene, rest_until = _session_params(person, cfg, rng)
        scene = SceneParams(**{**scene.__dict__, "wrist_x": [0.02, 0.5, 0.98][i % 3],
                               "wrist_y": [0.55, 0.9, 1.05][i % 3]})
        renderer = HandRenderer(scene, rng)
        yield renderer, to_image_coords(hand_trajectory(person.hand, cfg.duration_s, cfg.fps, rest_until, rng), scene)


def test_the_renderer_downsamples_only_where_it_drew():
    """Frames are downsampled only inside the box the hand was drawn in; for that to give the whole
    picture's numbers, nothing may be drawn outside it. Checked on hands of every size, near every edge
    of the picture and in every pose of a cohort's recordings."""
    checked = 0
    for renderer, landmarks in _renderers_near_every_edge(SynthConfig(people=12, seed=5, duration_s=4.0)):
        background = np.asarray(renderer.background)
        for kp in landmarks[::7]:
            img, (x0, y0, x1, y1) = renderer.draw(kp)
            changed = np.argwhere((np.asarray(img) != background).any(axis=2))
            assert len(changed), "the hand is in the picture"
            assert x0 % 2 == y0 % 2 == x1 % 2 == y1 % 2 == 0
            assert (changed[:, 1] >= x0).all() and (changed[:, 1] < x1).all()
            assert (changed[:, 0] >= y0).all() and (changed[:, 0] < y1).all()
            checked += 1
    assert checked > 100


def test_rendering_only_the_hand_box_gives_the_whole_pictures_numbers():
    """render computes only the box the hand was drawn in, and takes the rest of the frame from a
    background finished once per noise pattern: the same frames, to the bit, as lighting, noise and
    clipping over the whole downsampled picture. Hands near every edge, and in every pose."""
    import copy

    checked = 0
    for renderer, landmarks in _renderers_near_every_edge(SynthConfig(people=6, seed=3, duration_s=4.0)):
        for kp in landmarks[::5]:
            k = copy.deepcopy(renderer.rng).integers(len(renderer.noise_bank))  # the pattern render will draw
            whole = np.asarray(renderer.draw(kp)[0].reduce(2), dtype=np.float32)
            expected = np.clip(whole * renderer.lighting + renderer.noise_bank[k], 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(renderer.render(kp), expected)
            checked += 1
    assert checked > 100
