"""Unlike the training data: the embedding density, its file, and the live engine's warnings."""

import json

import numpy as np
import pytest

from symptomfuse.models.ood import EmbeddingDensity


def test_density_flags_about_one_in_a_hundred_alike_and_everything_far():
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.2, 3.0, 16))
    train, val, test = (rng.multivariate_normal(np.zeros(16), cov, n) for n in (800, 400, 4000))
    d = EmbeddingDensity.fit(train, val)
    assert 0.002 < (d.score(test) > 1).mean() < 0.03
    assert (d.score(test + 4.0) > 1).all()  # shifted: unlike the training data
    # a direction the training data never varied in counts more than its size suggests: 2.0 there is far
    # (shrinkage gives it a small variance of its own), 2.0 along the widest direction is not
    flat = train.copy()
    flat[:, 0] = 0.0
    d2 = EmbeddingDensity.fit(flat, flat[:200])
    odd, wide = test.copy(), test.copy()
    odd[:, 0], wide[:, 15] = 2.0, 2.0
    assert (d2.score(odd) > 1).mean() > 0.9 and (d2.score(wide) > 1).mean() < 0.2


def test_density_file_round_trips_and_bad_files_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    d = EmbeddingDensity.fit(rng.normal(size=(100, 4)), rng.normal(size=(50, 4)))
    d.save(tmp_path / "ood.safetensors")
    back = EmbeddingDensity.load(tmp_path / "ood.safetensors", 4)
    x = rng.normal(size=(10, 4))
    assert np.allclose(back.score(x), d.score(x))
    with pytest.raises(ValueError, match="does not fit"):
        EmbeddingDensity.load(tmp_path / "ood.safetensors", 8)
    EmbeddingDensity(np.zeros(4), np.eye(4), -1.0).save(tmp_path / "neg.safetensors")
    with pytest.raises(ValueError, match="positive"):
        EmbeddingDensity.load(tmp_path / "neg.safetensors")


def test_a_sound_unlike_the_training_voices_is_flagged_live_and_the_fusion_abstains(cohort, tmp_path):
    """Trained on synthetic vowels: the held-out people's own recordings pass; a whistle-like chirp with
    noise, which no training window resembled, is flagged, and the fused result abstains."""
    import av

    from symptomfuse.cli import main
    from symptomfuse.stream.detector import Detector
    from symptomfuse.stream.engine import StreamEngine
    from symptomfuse.stream.sources import replay_file

    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(tmp_path / "cur"), "--labels",
                 "healthy,parkinsons", "--workers", "1"]) == 0
    assert main(["train", str(tmp_path / "cur"), "--out", str(tmp_path / "run"), "--folds", "2", "--epochs", "4",
                 "--fusion-epochs", "4", "--fusions", "gated", "--late", "", "--baselines", "",
                 "--fusion-modalities", "audio,keypoints"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    rates = [f["ood"]["test_windows_flagged"] for f in run["models"]["audio_only"]["folds"]]
    assert all(0 <= r <= 0.35 for r in rates), rates  # held-out synthetic people: mostly alike
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--fold", "0",
                 "--no-onnx"]) == 0
    spec = json.loads((tmp_path / "model" / "export.json").read_text())
    assert spec["models"]["audio_only"]["ood"] == "audio_only/ood.safetensors"
    det = Detector.load(tmp_path / "model", "torch")
    # a sound no training window resembled: a chirp over noise
    sr, secs = 16000, 6
    t = np.arange(sr * secs) / sr
    sound = (0.3 * np.sin(2 * np.pi * (300 * t + 200 * t ** 2)) + 0.05 * np.random.default_rng(0).standard_normal(len(t)))
    path = tmp_path / "chirp.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        s = out.add_stream("aac", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(sound.astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = sr, 0
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    events = list(replay_file(StreamEngine(det, update_every=1.0, smooth=1), path))
    voiced = [e for e in events if e["modalities"]["audio"]["quality"] == "ok"]
    assert voiced and all(e["modalities"]["audio"]["unlike_training"] for e in voiced)
    assert all(e["fused"]["abstain"] and e["fused"]["unlike_training"] == ["audio"] for e in voiced
               if "audio" in e["fused"]["modalities"])
    test_people = set(spec["source"]["test_people"])
    rec = next(p for p in sorted((cohort / "recordings").glob("*.mp4")) if p.stem.split("_")[0] in test_people)
    own = [e["modalities"]["audio"]["unlike_training"] for e in replay_file(StreamEngine(det, update_every=1.0), rec)
           if e["modalities"]["audio"]["quality"] == "ok"]
    assert own and np.mean(own) < 0.5
