"""Data-parallel training over two CPU processes (gloo on 127.0.0.1, in a network namespace with only
loopback), launched by torchrun and by Lightning itself: the processes hold the same weights after every fit, and the model is as good as the
one process's, within noise."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from symptomfuse.cli import main

ARGS = ["--modalities", "keypoints", "--fusion-modalities", "", "--baselines", "", "--late", "", "--folds", "2",
        "--epochs", "8", "--patience", "8", "--seed", "2"]


@pytest.fixture(scope="module")
def curated(cohort, tmp_path_factory) -> Path:
    cur = tmp_path_factory.mktemp("ddp") / "cur"
    assert main(["curate", str(cohort / "manifest.csv"), "--out", str(cur), "--labels", "healthy,parkinsons",
                 "--modalities", "keypoints", "--workers", "1"]) == 0
    return cur


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _window_auc(run: Path) -> float:
    samples = pd.read_csv(run / "samples.csv")
    pred = pd.read_csv(run / "predictions" / "keypoints_only.csv").merge(samples, on="sample_index")
    return roc_auc_score(pred.y, pred.p_parkinsons)


@pytest.mark.parametrize("launcher", ["torchrun", "lightning"])
def test_two_cpu_processes_keep_equal_weights_and_learn_as_well_as_one(curated, tmp_path, launcher, loopback_only):
    assert main(["train", str(curated), "--out", str(tmp_path / "one"), "--workers", "1", *ARGS]) == 0
    train = ["train", str(curated), "--out", str(tmp_path / "ddp"), "--strategy", "ddp", "--devices", "2", *ARGS]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1"}
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "symptomfuse.cli", *train]
    else:  # Lightning starts the second process itself when the first network trains
        cmd = [sys.executable, "-m", "symptomfuse.cli", *train]
        env["MASTER_PORT"] = str(_free_port())
    done = subprocess.run(loopback_only + cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    folds = run["models"]["keypoints_only"]["folds"]
    assert len(folds) == 2 and all(f["ddp"]["max_weight_difference_between_ranks"] == 0.0 for f in folds)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("symptomfuse-rank1-*"))  # rank 1's scratch: gone
    one, ddp = _window_auc(tmp_path / "one"), _window_auc(tmp_path / "ddp")
    assert one > 0.7 and abs(ddp - one) < 0.1, (one, ddp)
    assert np.isfinite(pd.read_csv(tmp_path / "ddp" / "predictions" / "keypoints_only.csv").p_parkinsons).all()


def test_distributed_options_are_checked_before_any_data_is_loaded(curated, tmp_path, capsys):
    out = ["--out", str(tmp_path / "x")]
    assert main(["train", str(curated), *out, "--devices", "2"]) == 2
    assert "--strategy ddp" in capsys.readouterr().err
    assert main(["train", str(curated), *out, "--strategy", "ddp", "--devices", "2", "--workers", "2"]) == 2
    assert main(["train", str(curated), *out, "--strategy", "ddp", "--resume"]) == 2
    if not __import__("torch").cuda.is_available():
        assert main(["train", str(curated), *out, "--device", "cuda"]) == 2
        assert "no GPU" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
