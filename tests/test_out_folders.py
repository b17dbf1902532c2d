"""Nothing lost where a command writes: `curate` and `export` never mix their artifacts with a person's own
files in --out, nor overwrite them; a re-export replaces the earlier export whole, and an export that fails
part-way leaves the earlier one as it was."""

import json

import pandas as pd
import pytest

from symptomfuse.cli import main
from symptomfuse.data.curate import curate, default_contract
from symptomfuse.errors import UsageError
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.stream import export as export_mod
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.export import export_models

from conftest import make_av

AUDIO = {"name": "logmel_cnn", "channels": [4, 8], "dim": 8}
KEYPOINTS = {"name": "keypoints_tcn", "channels": 8, "dim": 8, "levels": 2}


def _manifest(tmp_path):
    make_av(tmp_path / "a.mp4", 4.0)
    pd.DataFrame({"path": [str(tmp_path / "a.mp4")], "person_id": ["A"], "label": ["healthy"]}).to_csv(
        tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_curate_refuses_a_folder_of_other_files_and_reuses_its_own(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    (mine / "summary.json").write_text("my own summary")
    assert main(["curate", str(manifest), "--out", str(mine), "--labels", "healthy,parkinsons"]) == 2
    assert "holds files that curate did not write (notes.txt)" in capsys.readouterr().err
    assert (mine / "summary.json").read_text() == "my own summary"  # nothing overwritten
    assert main(["curate", str(manifest), "--out", str(mine / "notes.txt"), "--labels", "healthy,parkinsons"]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err

    out = tmp_path / "curated"
    contract = default_contract(modalities=["audio"])
    curate(manifest, out, contract=contract, labels=["healthy", "parkinsons"], workers=1, progress=False)
    (out / ".windows.abc123.csv").write_text("")  # an atomic write that a kill left behind
    again = curate(manifest, out, contract=contract, labels=["healthy", "parkinsons"], workers=1, progress=False)
    assert again.cache_hits == 1 and again.decoded == 0  # its own folder: curated again from its cache


def _models(with_keypoints=True, seed=0):
    models = {"audio_only": (MultimodalClassifier({"audio": AUDIO}, None, 2, init_seed=seed), 1.0)}
    if with_keypoints:
        models["fused_gated"] = (MultimodalClassifier({"audio": AUDIO, "keypoints": KEYPOINTS},
                                                      {"name": "gated", "dim": 8}, 2, init_seed=seed + 1), 1.2)
    return models


@pytest.fixture
def contract():
    return default_contract(modalities=["audio", "keypoints"]).with_classes(["healthy", "parkinsons"], "parkinsons")


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path, contract):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="is not empty and is not an exported model folder"):
        export_models(_models(), "fused_gated", contract, mine, onnx=False)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no folder left beside it


def test_a_re_export_replaces_the_earlier_one_whole(tmp_path, contract):
    out = tmp_path / "model"
    export_models(_models(), "fused_gated", contract, out, onnx=True)
    assert (out / "fused_gated").is_dir() and list(out.rglob("*.onnx"))
    export_models(_models(with_keypoints=False), "audio_only", contract, out, onnx=False)
    assert sorted(p.name for p in out.iterdir()) == ["audio_only", "export.json"]  # nothing stale
    assert not list(out.rglob("*.onnx"))
    Detector.load(out, "torch")
    assert json.loads((out / "export.json").read_text())["primary"] == "audio_only"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_export_that_fails_part_way_leaves_the_earlier_one_as_it_was(tmp_path, contract, monkeypatch):
    out = tmp_path / "model"
    export_models(_models(), "fused_gated", contract, out, onnx=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = export_mod.export_model

    def fails_on_the_second(model, name, *args, **kw):
        if name == "fused_gated":
            raise RuntimeError("the disk filled up")
        return real(model, name, *args, **kw)

    monkeypatch.setattr(export_mod, "export_model", fails_on_the_second)
    with pytest.raises(RuntimeError, match="disk filled up"):  # other weights: their audio_only differs
        export_models(_models(seed=10), "fused_gated", contract, out, onnx=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert json.loads((out / "export.json").read_text())["primary"] == "fused_gated"
    Detector.load(out, "torch")  # still whole: its hashes match its files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_every_command_refuses_a_file_as_its_out_folder_and_synth_a_folder_of_other_files(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("precious")
    manifest = _manifest(tmp_path)
    for argv in (["synth", "--out", str(afile), "--people", "2"],
                 ["curate", str(manifest), "--out", str(afile), "--labels", "healthy,parkinsons"]):
        assert main(argv) == 2, argv
        assert "is a file: give a folder" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(["synth", "--out", str(mine), "--people", "2"]) == 2
    assert "holds files that synth did not write (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and afile.read_text() == "precious"


def test_train_refuses_a_file_as_its_out_folder(tmp_path):
    from symptomfuse.train.runfolder import start

    (tmp_path / "afile").write_text("precious")
    with pytest.raises(UsageError, match="is a file: give a folder"):
        start(tmp_path / "afile", {"models": []}, resume=False)
    assert (tmp_path / "afile").read_text() == "precious"
