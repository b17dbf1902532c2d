"""Interrupted runs: curate's workers die with it; a killed training run resumes; the same run over worker
processes; an interrupted atomic write leaves nothing behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

from symptomfuse.atomic import atomic_path


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _kill_and_check_no_worker_is_left(proc: subprocess.Popen, children: list[int]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 20
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not alive, f"workers {alive} outlived their killed parent"


def test_killing_curate_leaves_no_worker_behind(cohort, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "symptomfuse.cli", "curate", str(cohort / "manifest.csv"),
                             "--out", str(tmp_path / "cur"), "--labels", "healthy,parkinsons", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    children = []
    while time.time() < deadline and not children:
        children = _children(proc.pid)
        time.sleep(0.2)
    assert children, "curate started no worker"
    time.sleep(1.0)
    _kill_and_check_no_worker_is_left(proc, children)


def test_killing_train_while_its_workers_fit_leaves_no_worker_behind(cohort, tmp_path):
    """Lightning catches SIGTERM during a fit (and the pool's worker loop then catches its SystemExit and
    waits for the next job forever): the workers ask for SIGKILL when their parent dies."""
    from symptomfuse.data.curate import curate

    curate(cohort / "manifest.csv", tmp_path / "cur", labels=["healthy", "parkinsons"], workers=1, progress=False)
    proc = subprocess.Popen([sys.executable, "-m", "symptomfuse.cli", "train", str(tmp_path / "cur"), "--out",
                             str(tmp_path / "run"), "--folds", "2", "--epochs", "200", "--patience", "200",
                             "--modalities", "audio,keypoints", "--fusion-modalities", "", "--late", "",
                             "--baselines", "", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "run").glob("progress/*/fold*.json")):
        assert proc.poll() is None, "train ended before it was killed"
        time.sleep(0.2)
    assert list((tmp_path / "run").glob("progress/*/fold*.json")), "no model-fold finished in time"
    children = _children(proc.pid)
    assert children, "train started no worker"
    time.sleep(1.0)  # both workers are fitting their next model-folds now
    _kill_and_check_no_worker_is_left(proc, children)


def _train(cur, out, *extra):
    from symptomfuse.cli import main

    return main(["train", str(cur), "--out", str(out), "--folds", "2", "--epochs", "3", "--fusion-epochs", "3",
                 "--fusions", "gated", "--late", "mean", "--baselines", "lr", "--fusion-modalities", "audio,keypoints",
                 "--modalities", "audio,keypoints", "--workers", "1", *extra])


def _strip(run_json: dict) -> dict:
    """run.json less what differs between two identical runs: the id and the seconds taken."""
    import copy

    r = copy.deepcopy(run_json)
    r.pop("run_id")
    for m in r["models"].values():
        for f in m["folds"]:
            f.pop("seconds", None)
    return r


def test_a_killed_run_resumes_to_the_uninterrupted_one_and_runs_never_mix(cohort, tmp_path, monkeypatch):
    import json

    import pandas as pd
    import pytest

    from symptomfuse.cli import main
    from symptomfuse.errors import UsageError
    from symptomfuse.train import crossval

    cur = tmp_path / "cur"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--labels", "healthy,parkinsons",
                 "--modalities", "audio,keypoints", "--workers", "1"]) == 0
    assert _train(cur, tmp_path / "whole") == 0
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())
    # the same run with its networks spread over two worker processes is the same run, to the bit
    assert _train(cur, tmp_path / "two", "--workers", "2") == 0
    assert _strip(json.loads((tmp_path / "two" / "run.json").read_text())) == _strip(whole)
    for name in sorted(p.name for p in (tmp_path / "whole" / "predictions").glob("*.csv")):
        assert (tmp_path / "two" / "predictions" / name).read_bytes() == \
            (tmp_path / "whole" / "predictions" / name).read_bytes(), name

    real_fit, calls = crossval.fit, []

    def dies_on_the_fourth(*args, **kwargs):  # killed in the middle of the second fold
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(crossval, "fit", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        _train(cur, tmp_path / "cut")
    monkeypatch.setattr(crossval, "fit", real_fit)
    assert not (tmp_path / "cut" / "run.json").exists()
    assert main(["evaluate", str(tmp_path / "cut")]) != 0  # an interrupted run is not a run to evaluate
    assert _train(cur, tmp_path / "cut", "--resume") == 0
    resumed = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert _strip(resumed) == _strip(whole)
    for name in ("audio_only.csv", "fused_gated.csv", "late_mean.csv", "lr_fused.csv"):
        a = pd.read_csv(tmp_path / "whole" / "predictions" / name)
        b = pd.read_csv(tmp_path / "cut" / "predictions" / name)
        pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "cut" / "progress").exists()
    # resuming with other settings is refused; a new run in the folder replaces the old one wholly
    assert _train(cur, tmp_path / "cut", "--resume", "--seed", "1") == 2
    assert _train(cur, tmp_path / "cut", "--seed", "1") == 0
    new = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert new["run_id"] != resumed["run_id"]
    configs = [json.loads(p.read_text())["run_id"] for p in (tmp_path / "cut" / "models").glob("*/fold*/config.json")]
    assert configs and set(configs) == {new["run_id"]}
    # a folder that mixes two runs (weights of one, run.json of another) is refused by evaluate and export
    import shutil

    shutil.copytree(tmp_path / "whole" / "models" / "audio_only", tmp_path / "cut" / "models" / "audio_only",
                    dirs_exist_ok=True)
    with pytest.raises(UsageError, match="mixes two runs"):
        from symptomfuse.artifacts import RunInfo

        RunInfo.load(tmp_path / "cut")
    assert main(["evaluate", str(tmp_path / "cut")]) == 2
    assert main(["export", str(tmp_path / "cut"), "--out", str(tmp_path / "m"), "--no-onnx"]) == 2


def test_an_atomic_write_lands_whole_with_the_permissions_open_gives(tmp_path):
    """A writer that makes the temporary file anew with its own mode (safetensors writes 0600) still gives
    a file with the mode open() would; a failed write leaves neither the file nor its temporary."""
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.bin") as tmp:
            tmp.unlink()
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
        assert oct((tmp_path / "w.bin").stat().st_mode & 0o777) == oct(0o644)
        with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
    finally:
        os.umask(umask)


def test_a_progress_record_that_does_not_read_is_trained_again_not_a_traceback(tmp_path):
    """--resume reads back each finished model-fold; one whose files were cut off (a full disk) or edited
    counts as not finished, so the model-fold is trained again."""
    import numpy as np

    from symptomfuse.train.runfolder import finished, load_progress, save_progress

    def saved():
        save_progress(tmp_path, "run1", "audio_only", 0, {"fold": 0}, {"rows": np.arange(3)})
        return tmp_path / "progress" / "audio_only"

    folder = saved()
    assert finished(tmp_path, "run1", "audio_only", 0) and not finished(tmp_path, "run2", "audio_only", 0)
    record, arrays = load_progress(tmp_path, "run1", "audio_only", 0)
    assert record == {"fold": 0} and arrays["rows"].tolist() == [0, 1, 2]
    data = (folder / "fold0.npz").read_bytes()
    for damage in (lambda: (folder / "fold0.npz").write_bytes(data[: len(data) // 2]),
                   lambda: (folder / "fold0.npz").unlink(),
                   lambda: (folder / "fold0.json").write_text("{"),
                   lambda: (folder / "fold0.json").write_bytes(b"\xff\xfe"),
                   lambda: (folder / "fold0.json").write_text('{"run_id": "run1", "record": 7}')):
        folder = saved()
        damage()
        assert not finished(tmp_path, "run1", "audio_only", 0)
        assert load_progress(tmp_path, "run1", "audio_only", 0) is None
