"""Bring your own data: real speech (FSDD, shipped in data/fsdd), several labels per speaker, split by speaker."""

import json
from pathlib import Path

import pandas as pd
import pytest

from symptomfuse.cli import main

FSDD = Path(__file__).resolve().parents[1] / "data" / "fsdd"


@pytest.fixture(scope="module")
def small_fsdd(tmp_path_factory):
    m = pd.read_csv(FSDD / "manifest.csv", dtype=str)
    m = m[m.person_id.isin(["george", "jackson", "lucas"]) & m.label.isin(["0", "1", "2"])
          & m.session.isin(["0", "1", "2", "3"])].copy()
    m["path"] = [str(FSDD / p) for p in m.path]
    d = tmp_path_factory.mktemp("fsdd")
    m.to_csv(d / "manifest.csv", index=False)
    return d


def test_label_scope_person_quarantines_speakers_with_many_labels(small_fsdd, tmp_path):
    assert main(["curate", str(small_fsdd / "manifest.csv"), "--out", str(tmp_path / "c"), "--modalities",
                 "audio", "--window", "1.0", "--pad-short", "--workers", "1"]) == 1
    q = pd.read_csv(tmp_path / "c" / "quarantine.csv")
    assert set(q.reason) == {"conflicting_labels"} and len(q) == 36


def test_audio_only_multiclass_by_speaker(small_fsdd, tmp_path, capsys):
    cur, run = tmp_path / "c", tmp_path / "r"
    assert main(["curate", str(small_fsdd / "manifest.csv"), "--out", str(cur), "--modalities", "audio",
                 "--window", "1.0", "--pad-short", "--label-scope", "recording", "--workers", "1"]) == 0
    assert len(pd.read_csv(cur / "recordings.csv")) == 36
    assert main(["train", str(cur), "--out", str(run), "--modalities", "audio", "--fusion-modalities", "",
                 "--folds", "3", "--epochs", "2", "--batch-size", "8"]) == 0
    assert main(["evaluate", str(run), "--bootstrap", "20"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["top_level"] == "recording"
    assert [n for n, e in metrics["models"].items() if e["kind"] == "single"] == ["audio_only"]
    # chosen on each fold's validation speakers among the network and baselines. The classes are numbers, but
    # spoken digits are not ratings (no --ordinal): chosen by ROC AUC, and no rating error is reported
    assert {c["by"] for c in metrics["models"]["chosen_on_val"]["choices"]} == {"roc_auc"}
    assert "mae" not in metrics["models"]["audio_only"]["recording"]
    assert {"lr_audio", "rf_audio", "gb_audio"} <= set(metrics["models"])  # baselines under the same folds
    e = metrics["models"]["audio_only"]
    assert "person" not in e and 0.0 <= e["recording"]["accuracy"] <= 1.0
    assert metrics["classes"] == ["0", "1", "2"]
    windows = pd.read_csv(run / "samples.csv", dtype={"person_id": str})
    # every speaker is tested in exactly one fold
    assert windows.groupby("person_id").fold.nunique().eq(1).all() and windows.fold.nunique() == 3
