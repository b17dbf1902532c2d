"""The per-modality feature functions that curation and live streaming share."""

import numpy as np
import pytest

from symptomfuse.features.audio import LogMelConfig, log_mel, log_mel_windows, mel_filterbank
from symptomfuse.features.keypoints import FEATURES_PER_FRAME, keypoint_features
from symptomfuse.features.video import FrameConfig, frame_features, frame_from_array


def test_log_mel_puts_a_tone_in_its_band():
    cfg = LogMelConfig()
    t = np.arange(16000) / 16000
    for hz in (300.0, 1000.0, 3000.0):
        spec = log_mel(np.sin(2 * np.pi * hz * t).astype(np.float32), cfg)
        assert spec.shape == (64, cfg.frames(16000))
        peak = int(np.argmax(spec.mean(axis=1)))
        centres = np.argmax(mel_filterbank(cfg), axis=1) * 16000 / cfg.n_fft
        assert abs(centres[peak] - hz) / hz < 0.15


def test_log_mel_of_a_window_is_a_slice_of_the_whole():
    """Frames never reach outside their window, so a hop-aligned window equals a slice of the whole."""
    cfg = LogMelConfig()
    x = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32)
    whole = log_mel(x, cfg)
    part = log_mel(x[16000:16000 + 48000], cfg)
    np.testing.assert_allclose(part, whole[:, 100:100 + part.shape[1]], atol=1e-4)


@pytest.mark.parametrize("starts", [[0, 16000, 32000], [0, 1234, 20000]])
def test_log_mel_windows_equal_log_mel_of_each_window(starts):
    x = np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32)
    stacked = log_mel_windows(x, np.array(starts), 24000)
    for s, spec in zip(starts, stacked):
        np.testing.assert_allclose(spec, log_mel(x[s:s + 24000]), atol=1e-3)


def test_log_mel_rejects_bad_input():
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, 1000), np.float32))
    with pytest.raises(ValueError):
        log_mel(np.zeros(100, np.float32))


def test_frame_features_from_an_array_and_bgr():
    img = np.zeros((240, 320, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    rgb = frame_features(frame_from_array(img), FrameConfig(width=64, height=48))
    bgr = frame_features(frame_from_array(img[..., ::-1], "bgr"), FrameConfig(width=64, height=48))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    # the same picture whichever channel order it came in (up to FFmpeg's rounding when it converts)
    assert np.abs(rgb.astype(int) - bgr.astype(int)).max() <= 2
    assert abs(int(rgb[..., 0].mean()) - 200) <= 2 and rgb[..., 1].max() <= 2


def test_frame_features_match_ffmpeg_scaler():
    """Area-averaged planes converted to RGB agree with FFmpeg's own scale + convert to within a few levels."""
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 255, (24, 32, 3)), np.ones((10, 10, 1))).astype(np.uint8)  # 240x320 blocks
    frame = frame_from_array(img).reformat(format="yuv420p")
    ours = frame_features(frame, FrameConfig(width=64, height=48)).astype(int)
    ref = frame.reformat(width=64, height=48, format="rgb24", interpolation="AREA").to_ndarray().astype(int)
    assert np.median(np.abs(ours - ref)) <= 3
    # the same picture as RGB (not YUV) takes the other path and lands in the same place
    direct = frame_features(frame_from_array(img), FrameConfig(width=64, height=48)).astype(int)
    assert np.median(np.abs(direct - ref)) <= 3


def _hand(n=50, seed=0):
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0.3, 0.6, (1, 21, 3)) + 0.003 * rng.standard_normal((n, 21, 3))
    return kp.astype(np.float32)


def test_keypoint_features_ignore_position_and_scale():
    kp = _hand()
    a = keypoint_features(kp, fps=25, aspect=4 / 3)
    moved = kp.copy()
    moved[..., :2] = (kp[..., :2] - 0.45) * 0.5 + np.array([0.2, 0.3])
    b = keypoint_features(moved, fps=25, aspect=4 / 3)
    assert a.shape == (50, FEATURES_PER_FRAME)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_keypoint_features_mark_missing_frames():
    kp = _hand()
    kp[10:15] = np.nan
    f = keypoint_features(kp, fps=25, aspect=1.0)
    assert np.isfinite(f).all()
    assert (f[10:15, -1] == 0).all() and (f[:10, -1] == 1).all()
    assert (f[10:16, 42:84] == 0).all()  # no velocity into or out of the gap
    assert (f[16, 42:84] != 0).any()
    assert keypoint_features(np.full((5, 21, 3), np.nan), 25, 1.0).sum() == 0
    with pytest.raises(ValueError):
        keypoint_features(np.zeros((5, 20, 3)), 25, 1.0)
