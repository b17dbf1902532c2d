"""A curated folder or a run folder that was edited or damaged after it was written (tables, contract,
cache files, run.json, predictions, model files) is refused with the file, the line or the recording, and
what to do: never a traceback, and never read into wrong inputs or figures (a window number of -1 would
quietly take a recording's last window; a prediction of a sample no fold tested would enter the AUC)."""

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from symptomfuse.cli import main
from symptomfuse.data.curate import curate, default_contract
from symptomfuse.data.dataset import load_curated
from symptomfuse.errors import UsageError

from conftest import make_av


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    d = tmp_path_factory.mktemp("curated")
    for i in range(6):
        make_av(d / f"r{i}.mp4", 4.0, seed=i)
    pd.DataFrame({"path": [f"r{i}.mp4" for i in range(6)], "person_id": list("ABCDEF"),
                  "label": ["healthy", "parkinsons"] * 3}).to_csv(d / "m.csv", index=False)
    curate(d / "m.csv", d / "c", contract=default_contract(modalities=["audio", "video"]),
           labels=["healthy", "parkinsons"], workers=1, progress=False)
    return d / "c"


def _copy(curated, tmp_path):
    """A copy whose cache is its own (curation.json names the cache folder it was curated with)."""
    c = tmp_path / "c"
    shutil.copytree(curated, c)
    info = json.loads((c / "curation.json").read_text())
    (c / "curation.json").write_text(json.dumps({**info, "cache_dir": str(c / "cache")}))
    return c


def _edit_csv(name, fn):
    def edit(c):
        df = pd.read_csv(c / name, dtype=str, keep_default_na=False)
        fn(df)
        df.to_csv(c / name, index=False)
    return edit


def _set(column, value, row=0):
    return lambda df: df.__setitem__(column, [value if i == row else v for i, v in enumerate(df[column])])


def _entries(c):
    return sorted(p for p in (c / "cache").glob("??/*") if p.is_dir())


def _contract(fn):
    def edit(c):
        data = json.loads((c / "contract.json").read_text())
        fn(data)
        (c / "contract.json").write_text(json.dumps(data))
    return edit


EDITS = {
    "window number -1": (_edit_csv("windows.csv", _set("window", "-1")), r"windows.csv, line 2: window is '-1'"),
    "window number past the end": (_edit_csv("windows.csv", _set("window", "99")),
                                   r"line 2: recording 'r0' has 2 window\(s\), numbered from 0, and this one is number 99"),
    "window number as text": (_edit_csv("windows.csv", _set("window", "x")), r"window is 'x', not a whole number"),
    "a window listed twice": (_edit_csv("windows.csv", _set("window", "1")), r"line 3: window 1 of recording 'r0' is listed twice"),
    "start time not a number": (_edit_csv("windows.csv", _set("start_s", "nan")), r"start_s is 'nan', not a time"),
    "a person left empty": (_edit_csv("windows.csv", _set("person_id", " ")), r"person_id is ' ', not a non-empty name"),
    "a window relabelled": (_edit_csv("windows.csv", _set("label", "parkinsons")),
                            r"person and label \('A', 'parkinsons'\) are not its recording's \('A', 'healthy'\)"),
    "a window of no recording": (_edit_csv("windows.csv", _set("recording_id", "zz")), r"recording 'zz' is not in recordings.csv"),
    "a recording without windows": (_edit_csv("windows.csv", lambda df: df.drop(df.index[df.recording_id == "r2"], inplace=True)),
                                    r"recording 'r2' has no window in windows.csv"),
    "a column gone": (_edit_csv("windows.csv", lambda df: df.drop(columns="person_id", inplace=True)),
                      r"windows.csv has no column 'person_id'"),
    "windows.csv emptied": (lambda c: (c / "windows.csv").write_text(""), r"windows.csv is not a readable CSV table"),
    "recordings.csv gone": (lambda c: (c / "recordings.csv").unlink(), r"recordings.csv is missing"),
    "a cache key pointing elsewhere": (_edit_csv("recordings.csv", _set("cache_key", "../../etc")),
                                       r"cache_key is '../../etc', not a cache key"),
    "a recording's modalities unknown": (_edit_csv("recordings.csv", _set("modalities", "audio+inf")),
                                         r"recordings.csv, line 2: modalities is 'audio\+inf', not '\+'-joined names of "
                                         r"curated modalities \(audio, video\)"),
    "a recording listed twice": (_edit_csv("recordings.csv", _set("recording_id", "r1")), r"lists recording 'r1' twice"),
    "curation.json not JSON": (lambda c: (c / "curation.json").write_text("{"), r"curation.json is not valid JSON \(Expecting.*\): curate again with the same manifest"),
    "contract.json not JSON": (lambda c: (c / "contract.json").write_bytes(b"\xff\xfe{"), r"contract.json is not valid JSON \(.*codec can.t decode.*\): curate it again"),
    "a class named twice": (_contract(lambda d: d.__setitem__("classes", ["healthy", "healthy"])), r"name one class twice"),
    "a band edge edited (the same shapes)": (
        _contract(lambda d: d["modalities"]["audio"]["settings"].__setitem__("f_max", 7000.0)),
        r"contract.json does not give the feature settings the folder was curated with \(curation.json records them\): "
        "it was edited afterwards; curate again"),
    "a frame size edited": (_contract(lambda d: d["modalities"]["video"]["settings"].__setitem__("width", 128)),
                            r"contract.json does not give the feature settings the folder was curated with"),
    "a frame size edited in both files": (lambda c: (_contract(lambda d: d["modalities"]["video"]["settings"].__setitem__(
        "width", 128))(c), _edit_json("curation.json", lambda d: d["features"]["modalities"]["video"].__setitem__(
            "width", 128))(c)),
                            r"the cached video windows of recording 'r0' have the shape \(75, 48, 64, 3\), where the "
                            r"feature contract \(contract.json\) gives \(75, 48, 128, 3\)"),
    "a frame size beyond bounds": (_contract(lambda d: d["modalities"]["video"]["settings"].__setitem__("width", 10 ** 9)),
                                   r"the feature contract does not hold \(--frame-size 1000000000x48: at most 1024"),
    "a cache file cut off": (lambda c: (_entries(c)[0] / "audio.npy").write_bytes(b"\x93NUMPY\x01\x00"),
                             r"are damaged \(audio.npy is not a NumPy array file.*curate again.*delete .*cache/"),
    "a cache file replaced by a link": (lambda c: ((_entries(c)[0] / "audio.npy").unlink(),
                                                   (_entries(c)[0] / "audio.npy").symlink_to(c / "windows.csv")),
                                        r"audio.npy is not a NumPy array file"),
}


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edited_or_damaged_curated_folder_is_refused_with_what_to_do(curated, tmp_path, what):
    edit, message = EDITS[what]
    c = _copy(curated, tmp_path)
    load_curated(c)  # the copy itself loads
    edit(c)
    with pytest.raises(UsageError, match=message):
        load_curated(c)


def test_curating_again_repairs_a_damaged_cache_entry(curated, tmp_path):
    """A cache entry whose file was cut off is not a cache hit: curating again recomputes it, and it
    alone, to the same features."""
    c = _copy(curated, tmp_path)
    before = np.asarray(load_curated(c).inputs["audio"])
    (_entries(c)[0] / "audio.npy").write_bytes(b"\x93NUMPY\x01\x00")
    with pytest.raises(UsageError, match="curate again with the same manifest and --out; it recomputes"):
        load_curated(c)
    again = curate(curated.parent / "m.csv", c, contract=default_contract(modalities=["audio", "video"]),
                   labels=["healthy", "parkinsons"], workers=1, progress=False)
    assert (again.decoded, again.cache_hits) == (1, 5)
    assert np.array_equal(np.asarray(load_curated(c).inputs["audio"]), before)


def test_damage_past_the_first_recording_is_named_when_its_windows_are_read(curated, tmp_path):
    """Loading cuts one recording per modality (reading every one would cost a pass over the data); the
    others are checked as training reads them."""
    c = _copy(curated, tmp_path)
    ws = load_curated(c)
    good = np.asarray(ws.inputs["audio"])
    last = next(e for e in _entries(c) if e.name == pd.read_csv(c / "recordings.csv").cache_key.iloc[-1])
    np.save(last / "audio.npy", np.zeros((2, 64, 5), np.float32))
    ws = load_curated(c)
    assert np.array_equal(ws.inputs["audio"][:10], good[:10])  # the undamaged recordings read as before
    with pytest.raises(UsageError, match=r"cached audio windows of recording 'r5' have the shape \(64, 5\)"):
        np.asarray(ws.inputs["audio"])


def test_the_cli_answers_a_damaged_folder_with_exit_2_and_no_traceback(curated, tmp_path, capsys):
    c = _copy(curated, tmp_path)
    EDITS["window number -1"][0](c)
    assert main(["train", str(c), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "window is '-1'" in err and "Traceback" not in err


def test_train_answers_a_damaged_summary_with_exit_2(curated, tmp_path, capsys):
    c = _copy(curated, tmp_path)
    _edit_json("summary.json", lambda d: d["modalities"].__setitem__("audio", 3.5))(c)
    assert main(["train", str(c), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "summary.json is damaged (its modalities are not counts): curate again" in err and "Traceback" not in err


def test_training_that_never_gets_a_finite_loss_says_why(curated, tmp_path):
    """NaN inputs (here a cache of NaN; a network that does not impute them) give no best epoch: a message,
    not an AttributeError from deep in training."""
    from symptomfuse.models.multimodal import MultimodalClassifier
    from symptomfuse.train.fit import TrainConfig, fit

    c = _copy(curated, tmp_path)
    for entry in _entries(c):
        np.save(entry / "audio.npy", np.full_like(np.load(entry / "audio.npy"), np.nan))
    ws = load_curated(c, ["audio"])
    model = MultimodalClassifier({"audio": {"name": "logmel_cnn", "channels": [4, 8], "dim": 8}}, None, 2, init_seed=1)
    train, val = np.flatnonzero(ws.people > "B"), np.flatnonzero(ws.people <= "B")
    with pytest.raises(UsageError, match=r"never reached a finite validation loss \(last: nan\): the inputs hold NaN"):
        fit(model, ws, train, val, TrainConfig(max_epochs=2, progress=False))


@pytest.fixture(scope="module")
def run(curated, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    here = os.getcwd()
    os.chdir(curated.parent)  # the curated folder given relative to where train runs
    try:
        assert main(["train", curated.name, "--out", str(out), "--modalities", "audio", "--fusion-modalities", "",
                     "--baselines", "lr", "--epochs", "1", "--folds", "3", "--workers", "1"]) == 0
    finally:
        os.chdir(here)
    # recorded whole, so that evaluate --importance / --mc-dropout find it from any working folder
    assert json.loads((out / "run.json").read_text())["protocol"]["curated"] == str(curated.resolve())
    return out


def _edit_json(name, fn):
    def edit(r):
        data = json.loads((r / name).read_text())
        fn(data)
        (r / name).write_text(json.dumps(data))
    return edit


def _each_fold(fn):
    return lambda data: [fn(record) for m in data["models"].values() for record in m["folds"]]


PREDICTIONS = "predictions/audio_only.csv"
RUN_EDITS = {
    "run.json not JSON": (lambda r: (r / "run.json").write_bytes(b"\xff{"), "run.json is not valid JSON"),
    "a unit that is none": (_edit_json("run.json", lambda d: d.__setitem__("unit", "galaxy")), "unit 'galaxy' is not one of"),
    "predictions named as a path": (_edit_json("run.json", lambda d: d["predictions"].append(
        {"model": "../../etc/passwd", "dropped": []})), r"predictions of '../../etc/passwd', which is not a model of the run"),
    "predictions without a modality the model lacks": (_edit_json("run.json", lambda d: d["predictions"].append(
        {"model": "audio_only", "dropped": ["video"]})), r"not among its modalities \['audio'\]"),
    "predictions without a list": (_edit_json("run.json", lambda d: d["predictions"].append(
        {"model": "audio_only", "dropped": [["audio"]]})), r"predictions of audio_only without \[\['audio'\]\]"),
    "a model chosen among paths": (_edit_json("run.json", lambda d: d["models"]["chosen_on_val"]["spec"].__setitem__(
        "candidates", ["audio_only", "../x"])), r"chosen_on_val chooses among \['audio_only', '../x'\], which are not all"),
    "a temperature below 0": (_edit_json("run.json", _each_fold(lambda f: f.__setitem__("temperature", -1))),
                              "model audio_only: fold 0 has temperature -1, not a positive number"),
    "a fold record that is a number": (_edit_json("run.json", lambda d: d["models"]["audio_only"]["folds"].__setitem__(
        1, 7)), r"model audio_only: a fold record without a fold number of its own \(7\)"),
    "a fold recorded twice": (_edit_json("run.json", _each_fold(lambda f: f.__setitem__("fold", 0))),
                              "a fold record without a fold number of its own"),
    "a training history of text": (_edit_json("run.json", _each_fold(lambda f: f.__setitem__("history", "../x"))),
                                   "fold 0 has a training history that is not a list of epochs with losses"),
    "an epoch without its loss": (_edit_json("run.json", _each_fold(lambda f: [e.pop("val_loss") for e in f.get(
        "history", [])])), "fold 0 has a training history that is not a list"),
    "run.json's models gone": (_edit_json("run.json", lambda d: d.__setitem__("models", [])), "run.json is malformed"),
    "a probability as text": (_edit_csv(PREDICTIONS, _set("p_healthy", "abc")), r"audio_only.csv, line 2: p_healthy is 'abc'"),
    "a probability below 0": (_edit_csv(PREDICTIONS, _set("p_healthy", "-0.5")), "not a probability from 0 to 1"),
    "probabilities that do not sum to 1": (_edit_csv(PREDICTIONS, _set("p_healthy", "0.9")), r"line 2: its probabilities sum to"),
    "half a prediction": (_edit_csv(PREDICTIONS, _set("p_healthy", "")), "line 2: its probabilities are partly empty"),
    "a sample that is not one": (_edit_csv(PREDICTIONS, _set("sample_index", "99999")), r"sample 99999 is not in samples.csv"),
    "a sample predicted twice": (_edit_csv(PREDICTIONS, _set("sample_index", "1")), "line 3: sample 1 is predicted twice"),
    "a tested sample left out": (_edit_csv(PREDICTIONS, lambda df: df.drop(df.index[:3], inplace=True)),
                                 r"sample 0, which a fold tested, has no line \(3 such sample"),
    "a predictions column renamed": (_edit_csv(PREDICTIONS, lambda df: df.rename(columns={"p_parkinsons": "p_x"},
                                                                                 inplace=True)), "has no column 'p_parkinsons'"),
    "samples.csv emptied": (lambda r: (r / "samples.csv").write_text(""), "samples.csv is not a readable CSV table"),
    "a class index outside the classes": (_edit_csv("samples.csv", _set("y", "7")), r"line 2: y is 7, but the run has 2 classes"),
    "a fold as text": (_edit_csv("samples.csv", _set("fold", "x")), "fold is 'x', not a whole number from -1"),
    "samples out of order": (_edit_csv("samples.csv", _set("sample_index", "5")), r"line 2: sample_index is 5, where the lines count"),
    "a model's config not JSON": (lambda r: (r / "models/audio_only/fold0/config.json").write_text("{"),
                                  r"fold0/config.json is not valid JSON"),
}


@pytest.mark.parametrize("what", list(RUN_EDITS))
def test_an_edited_or_damaged_run_folder_is_refused_by_evaluate_and_export(run, tmp_path, what, capsys):
    edit, message = RUN_EDITS[what]
    r = tmp_path / "run"
    shutil.copytree(run, r)
    edit(r)
    for command in (["evaluate", str(r), "--bootstrap", "20"], ["export", str(r), "--out", str(tmp_path / "x")]):
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert re.search(message, err), (command, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("what, edit, message", [
    ("weights that are not safetensors", lambda r: (r / "models/audio_only/fold0/model.safetensors").write_bytes(b"x"),
     r"fold0 holds no model this version can read \(SafetensorError"),
    ("weights of another shape", _edit_json("models/audio_only/fold0/config.json",
                                            lambda d: d["model"].__setitem__("n_classes", 5)), "size mismatch"),
    ("a density that is not safetensors", lambda r: (r / "models/audio_only/fold0/ood.safetensors").write_bytes(b"x"),
     "ood.safetensors is not a usable embedding density"),
])
def test_export_refuses_a_run_whose_model_files_are_damaged(run, tmp_path, capsys, what, edit, message):
    r = tmp_path / "run"
    shutil.copytree(run, r)
    edit(r)
    assert main(["export", str(r), "--out", str(tmp_path / "x"), "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err


def test_a_model_that_predicted_no_one_is_reported_as_such(run, tmp_path, capsys):
    """Empty lines are a model's way of giving no prediction (a sample without its modality): a model
    with no prediction at all gets NaN figures and 0 people, not a crash in the bootstrap."""
    r = tmp_path / "run"
    shutil.copytree(run, r)
    _edit_csv(PREDICTIONS, lambda df: df.update(df[["p_healthy", "p_parkinsons"]].map(lambda _: "")))(r)
    assert main(["evaluate", str(r), "--bootstrap", "20"]) == 0
    metrics = json.loads((r / "metrics.json").read_text())["models"]
    assert metrics["audio_only"]["coverage"] == 0 and metrics["audio_only"]["person"]["people"] == 0
    assert np.isnan(metrics["audio_only"]["person"]["roc_auc"]) and metrics["lr_audio"]["person"]["people"] == 6
    assert "Warning" not in capsys.readouterr().err


def test_text_from_run_json_enters_the_report_as_text_not_markup(run, tmp_path):
    """A run folder may come from someone else: what run.json says is shown, never run by the browser."""
    r = tmp_path / "run"
    shutil.copytree(run, r)
    _edit_json("run.json", lambda d: d["protocol"].update(
        split="fixed", split_people={"<script>alert(1)</script>": 3, "test": "<img src=x onerror=alert(2)>"}))(r)
    assert main(["evaluate", str(r), "--bootstrap", "20"]) == 0
    page = (r / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 3" in page
    assert "<script>" not in page and "<img src=x" not in page
