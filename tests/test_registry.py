"""A modality defined in this file alone (one class + one registration) goes through every stage:
curate -> train -> evaluate -> export -> stream. Nothing else in the package names it."""

import json

import numpy as np
import pandas as pd
import pytest

from symptomfuse import modalities
from symptomfuse.cli import main
from symptomfuse.modalities.base import Modality, SourceMedia

CHUNKS = 30


class Envelope(Modality):
    """The loudness envelope of the sound track: RMS in dB over 30 equal parts of each window."""

    name = "envelope"
    source = "audio"
    needs = ("audio",)
    help = "loudness envelope (test modality)"
    default_encoder = "mlp"
    live_qualities = ("ok", "no_data")

    def input_shape(self):
        return (CHUNKS,)

    def encoder_args(self):
        return {"n_features": CHUNKS}

    @staticmethod
    def envelope(samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float64)
        x = x[: len(x) // CHUNKS * CHUNKS].reshape(CHUNKS, -1)
        return (10 * np.log10((x * x).mean(axis=1) + 1e-10)).astype(np.float32)

    def extract(self, media: SourceMedia, starts):
        n = self.timing.window_samples()
        first = np.round(starts * self.timing.sample_rate).astype(int)
        return {"envelope": np.stack([self.envelope(media.audio[f:f + n]) for f in first])}

    def baseline_features(self, x):
        return x

    def live_window(self, streams, state, start, wanted):
        ring = streams.audio
        first = None if ring.start_t is None else ring.index(start)
        samples = None if first is None else ring.read(first, self.timing.window_samples())
        if samples is None:
            return "no_data", None
        return "ok", (self.envelope(samples)[None] if wanted else None)


@pytest.fixture
def envelope():
    modalities.register(Envelope)
    yield Envelope
    modalities.unregister("envelope")


def test_a_modality_defined_in_a_test_runs_end_to_end(envelope, cohort, tmp_path, capsys):
    cur, run, exp = tmp_path / "c", tmp_path / "r", tmp_path / "e"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--modalities", "audio,envelope",
                 "--labels", "healthy,parkinsons", "--workers", "1"]) == 0
    contract = json.loads((cur / "contract.json").read_text())
    assert list(contract["modalities"]) == ["audio", "envelope"]
    assert main(["train", str(cur), "--out", str(run), "--folds", "2", "--epochs", "3", "--fusion-epochs", "2",
                 "--fusions", "gated", "--late", "mean", "--baselines", "lr",
                 "--encoder-args", '{"audio": {"channels": [4, 8], "dim": 8}, "envelope": {"dim": 8}}']) == 0
    assert main(["evaluate", str(run), "--bootstrap", "20"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("envelope_only", "fused_gated", "late_mean", "lr_envelope"):
        assert 0.0 <= metrics["models"][name]["person"]["roc_auc"] <= 1.0
    assert any(e["model"] == "fused_gated" and e["dropped"] == ["audio"] for e in metrics["ablations"])
    assert main(["export", str(run), "--out", str(exp), "--model", "fused_gated"]) == 0
    spec = json.loads((exp / "export.json").read_text())
    assert spec["singles"]["envelope"] == "envelope_only" and (exp / "envelope_only" / "encoder.envelope.onnx").exists()
    capsys.readouterr()
    rec = pd.read_csv(cohort / "manifest.csv").path[0]
    for backend in ("torch", "onnx"):
        assert main(["stream", str(cohort / rec), "--model", str(exp), "--jsonl", "-", "--backend", backend]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert len(events) >= 3
        assert all(e["modalities"]["envelope"]["quality"] == "ok" for e in events)
        assert all(0.0 <= e["modalities"]["envelope"]["p"] <= 1.0 for e in events)
        assert all(set(e["fused"]["modalities"]) == {"audio", "envelope"} for e in events)


def test_unknown_modalities_are_refused_with_what_exists(tmp_path, capsys):
    assert main(["curate", "--out", str(tmp_path / "o"), "--modalities", "accel", "--table",
                 f"t={tmp_path / 'none.csv'}"]) == 2
    err = capsys.readouterr().err
    assert "accel" in err and "audio" in err and "Traceback" not in err


def test_encoders_take_their_input_shape_from_the_feature_contract(cohort, tmp_path):
    """curate --n-mels 40 used to crash train (the encoder assumed 64 bands)."""
    cur, run = tmp_path / "c", tmp_path / "r"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--modalities", "audio",
                 "--n-mels", "40", "--labels", "healthy,parkinsons", "--workers", "1"]) == 0
    assert main(["train", str(cur), "--out", str(run), "--folds", "2", "--epochs", "1", "--baselines", "",
                 "--late", "", "--fusions", "", "--encoder-args", '{"audio": {"channels": [4, 8], "dim": 8}}']) == 0
    config = json.loads((run / "models" / "audio_only" / "fold0" / "config.json").read_text())
    assert config["model"]["encoders"]["audio"]["n_mels"] == 40
