"""The pretrained GE2E voice embedding: the wheel's weights, checked; one voice near itself, far from
another; the modality's windows are the feature function's."""

import numpy as np
import pytest

from symptomfuse.errors import UsageError
from symptomfuse.features import speaker
from symptomfuse.synth.voice import VoiceParams, synth_vowel

SR = 16000


def _vowel(f0, scale, seed, seconds=3.0):
    p = VoiceParams(f0_hz=f0, formant_scale=scale, jitter=0.003, shimmer=0.02, noise_ratio=0.004, tremor_hz=0.0,
                    tremor_depth=0.0, open_quotient=0.6)
    return synth_vowel(p, seconds + 0.6, SR, np.random.default_rng(seed))[int(0.3 * SR):int((seconds + 0.3) * SR)]


def test_one_voice_lies_nearer_itself_than_another_voice():
    a1, a2 = speaker.speaker_embedding(_vowel(110, 1.0, 1)), speaker.speaker_embedding(_vowel(110, 1.0, 2))
    b = speaker.speaker_embedding(_vowel(220, 1.18, 3))
    assert a1.shape == (256,) and np.linalg.norm(a1) == pytest.approx(1.0, abs=1e-5)
    assert float(a1 @ a2) > float(a1 @ b) + 0.05
    assert np.array_equal(speaker.speaker_embedding(np.zeros(SR * 3)), np.zeros(256, np.float32))
    # louder or softer, the same voice: levels are brought to -30 dBFS first
    assert np.allclose(speaker.speaker_embedding(_vowel(110, 1.0, 1) * 0.1), a1, atol=1e-4)


def test_weights_that_are_not_the_wheels_are_refused(monkeypatch):
    assert speaker.weights_path().name == "pretrained.pt"
    monkeypatch.setattr(speaker, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(UsageError, match="SHA-256"):
        speaker.weights_path()


def test_the_ge2e_modality_embeds_each_window():
    from symptomfuse.contract import FeatureContract
    from symptomfuse.modalities import SourceMedia, Timing

    contract = FeatureContract.build(["ge2e"], Timing(window_s=2.0, hop_s=1.0))
    mod = contract.modality("ge2e")
    audio = _vowel(130, 1.0, 5, seconds=4.0)
    starts = Timing(window_s=2.0, hop_s=1.0).starts(len(audio) / SR)
    out = mod.extract(SourceMedia(audio, None, None, 0, None, {}), starts)["ge2e"]
    assert out.shape == (len(starts), 256) and mod.input_shape() == (256,)
    assert np.allclose(out[1], speaker.speaker_embedding(audio[SR:3 * SR]))


def test_mel_frames_are_centred_hann_windowed_power_frames_without_the_whole_of_librosa():
    """Frame k is the power spectrum of samples [160k - 200, 160k + 200) (zero-padded at the ends) under a
    periodic Hann window, through the mel filterbank; computing them never imports the parts of
    librosa that compile numba code for half a minute on a fresh install."""
    import subprocess
    import sys

    x = np.random.default_rng(3).normal(size=SR).astype(np.float32) * 0.1
    got = speaker.mel_frames(x)
    assert got.shape == (1 + SR // 160, speaker.N_MELS)
    basis, window = speaker._mel_basis()
    padded = np.pad(x, 200)
    for k in (0, 7, len(got) - 1):
        power = np.abs(np.fft.rfft(padded[160 * k:160 * k + 400] * window)) ** 2
        np.testing.assert_allclose(got[k], basis @ power, rtol=1e-4, atol=1e-9)
    code = ("import sys, numpy as np; from symptomfuse.features import speaker; "
            "speaker.speaker_embedding(np.random.default_rng(0).normal(size=48000) * 0.1); "
            "print('librosa.core.pitch' in sys.modules, 'librosa.feature' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]
