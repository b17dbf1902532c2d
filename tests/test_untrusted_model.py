"""An export folder is untrusted input: 24 ways to break or poison one, each refused with one clear line
naming the problem (a UsageError, never a traceback), and nothing outside the folder is opened."""

import json
import pickle
import shutil

import numpy as np
import pytest

from symptomfuse.cli import main
from symptomfuse.data.curate import default_contract
from symptomfuse.errors import UsageError
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.models.ood import EmbeddingDensity
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.export import export_models
from symptomfuse.stream.untrusted import sha256


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    contract = default_contract(modalities=["audio", "keypoints"]).with_classes(["healthy", "parkinsons"], "parkinsons")
    enc = {"audio": {"name": "logmel_cnn", "channels": [4, 8], "dim": 8},
           "keypoints": {"name": "keypoints_tcn", "channels": 8, "dim": 8, "levels": 2}}
    models = {"audio_only": (MultimodalClassifier({"audio": enc["audio"]}, None, 2, init_seed=0), 1.0),
              "fused_gated": (MultimodalClassifier(enc, {"name": "gated", "dim": 8}, 2, init_seed=1), 1.2)}
    rng = np.random.default_rng(0)
    density = EmbeddingDensity.fit(rng.normal(size=(50, 8)), rng.normal(size=(20, 8)))
    export_models(models, "fused_gated", contract, out, onnx=True, densities={"audio_only": density})
    Detector.load(out, "torch")  # the untouched folder loads
    return out


def _spec(folder):
    return json.loads((folder / "export.json").read_text())


def _write(folder, spec):
    (folder / "export.json").write_text(json.dumps(spec))


def _rehash(folder, spec, rel):
    """An attacker who also rewrites export.json's hashes: the contents must be checked too."""
    for entry in spec["models"].values():
        if rel in entry["sha256"]:
            entry["sha256"][rel] = sha256(folder / rel)


def _edit_spec(fn):
    def mutate(folder):
        spec = _spec(folder)
        fn(spec)
        _write(folder, spec)
    return mutate


def _replace(rel, data: bytes, rehash=False):
    def mutate(folder):
        (folder / rel).write_bytes(data)
        if rehash:
            spec = _spec(folder)
            _rehash(folder, spec, rel)
            _write(folder, spec)
    return mutate


def _onnx_with_outside_weights(folder):
    """The encoder's ONNX rewritten to keep its weights in a file beside it that export.json does not name
    (an ONNX file may point anywhere for them), hashes rewritten."""
    import onnx

    rel = "audio_only/encoder.audio.onnx"
    model = onnx.load(str(folder / rel))
    onnx.save_model(model, str(folder / rel), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data")
    _rehash_file(folder, rel)


def _edit_config(fn):
    def mutate(folder):
        path = folder / "fused_gated" / "config.json"
        cfg = json.loads(path.read_text())
        fn(cfg["model"])
        path.write_text(json.dumps(cfg))
        spec = _spec(folder)
        _rehash(folder, spec, "fused_gated/config.json")
        _write(folder, spec)
    return mutate


def _part(spec, key="safetensors"):
    return spec["models"]["audio_only"]["parts"]["encoder.audio"]


MUTATIONS = {
    "export.json is not JSON": (lambda f: (f / "export.json").write_text("{not json"), "not valid JSON"),
    "export.json is a list": (lambda f: (f / "export.json").write_text("[1, 2]"), "format"),
    "a key is missing": (_edit_spec(lambda s: s.pop("singles")), "missing"),
    "an extra key": (_edit_spec(lambda s: s.update(extra=1)), "unexpected"),
    "an absolute part path": (_edit_spec(lambda s: _part(s).update(safetensors="/etc/hostname")), "outside"),
    "a part path escaping the folder": (_edit_spec(lambda s: _part(s).update(safetensors="../../etc/passwd")), "outside"),
    "a part file missing": (lambda f: (f / "audio_only" / "encoder.audio.safetensors").unlink(), "missing"),
    "a truncated weight file": (lambda f: (f / "audio_only" / "encoder.audio.safetensors").write_bytes(
        (f / "audio_only" / "encoder.audio.safetensors").read_bytes()[:100]), "SHA-256"),
    "a pickle in place of safetensors": (_replace("audio_only/encoder.audio.safetensors", pickle.dumps({"x": 1})),
                                         "SHA-256"),
    "a pickle in place of safetensors, hashes rewritten": (
        _replace("audio_only/encoder.audio.safetensors", pickle.dumps({"x": 1}), rehash=True), "safetensors"),
    "garbage ONNX, hashes rewritten": (_replace("audio_only/encoder.audio.onnx", b"\x00garbage" * 100, rehash=True),
                                       "ONNX"),
    "ONNX weights in a file export.json does not name, hashes rewritten": (_onnx_with_outside_weights, "ONNX"),
    "no hash recorded": (_edit_spec(lambda s: s["models"]["audio_only"].update(sha256={})), "no SHA-256"),
    "a dimension asking for petabytes": (_edit_config(lambda m: m["encoders"]["audio"].update(dim=10**9)), "out of bounds"),
    "a window of a billion seconds": (_edit_spec(lambda s: s["contract"]["timing"].update(window_s=1e9)), "600"),
    "an unknown setting in the contract": (_edit_spec(lambda s: s["contract"]["modalities"]["audio"]["settings"].update(
        evil=1)), "unknown key"),
    "a temperature that is not a number": (_edit_spec(lambda s: s["models"]["audio_only"].update(temperature="hot")),
                                           "temperature"),
    "a primary model that is not there": (_edit_spec(lambda s: s.update(primary="nobody")), "primary"),
    "a config of another architecture": (_edit_config(lambda m: m["encoders"]["audio"].update(channels=[16, 32])),
                                         "do not fit"),
    "a part that is not an object": (_edit_spec(lambda s: s["models"]["audio_only"]["parts"].update(
        {"encoder.audio": "../../etc/passwd"})), "expected an object"),
    "a model without its head": (_edit_spec(lambda s: s["models"]["fused_gated"]["parts"].pop("head")), "head"),
    "a spectrogram floor of 1e308 dB": (_edit_spec(lambda s: s["contract"]["modalities"]["audio"]["settings"].update(
        floor_db=1e308)), "floor_db"),
    "a spectrogram hop of 0 samples": (_edit_spec(lambda s: s["contract"]["modalities"]["audio"]["settings"].update(
        hop_length=0)), "hop_length"),
    "an embedding density of the wrong size, hashes rewritten": (
        lambda f: (EmbeddingDensity(np.zeros(3), np.eye(3), 1.0).save(f / "audio_only" / "ood.safetensors"),
                   _rehash_file(f, "audio_only/ood.safetensors")), "embedding density"),
}


TORCH_ONLY = {"a pickle in place of safetensors, hashes rewritten", "a config of another architecture"}


def _rehash_file(folder, rel):
    spec = _spec(folder)
    _rehash(folder, spec, rel)
    _write(folder, spec)


@pytest.mark.parametrize("what", list(MUTATIONS))
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_broken_or_poisoned_model_folder_is_refused_in_one_line(good, tmp_path, what, backend):
    mutate, says = MUTATIONS[what]
    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    mutate(folder)
    if backend == "torch" and "ONNX" in what:
        pytest.skip("the torch backend does not read ONNX files")
    if backend == "onnx" and what in TORCH_ONLY:
        pytest.skip("the onnx backend runs the ONNX files, not these weights")
    with pytest.raises(UsageError) as err:
        Detector.load(folder, backend)
    message = str(err.value)
    assert says in message and "\n" not in message, message


def test_the_cli_answers_a_poisoned_folder_with_exit_2(good, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    MUTATIONS["an absolute part path"][0](folder)
    code = main(["stream", str(tmp_path / "x.mp4"), "--model", str(folder), "--no-view",
                 "--jsonl", str(tmp_path / "e.jsonl")])
    assert code != 0
    (tmp_path / "x.mp4").write_bytes(b"")
    assert main(["stream", str(tmp_path / "x.mp4"), "--model", str(folder), "--no-view",
                 "--jsonl", str(tmp_path / "e.jsonl")]) == 2
    assert "outside the model folder" in capsys.readouterr().err
