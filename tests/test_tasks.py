"""Fusion across separately recorded tasks: a voice recording and a hand recording per session, some
people missing one task, fused per person."""

import json

import pandas as pd
import pytest

from symptomfuse.cli import main
from symptomfuse.data.curate import curate, default_contract
from symptomfuse.synth.cohort import SynthConfig, synthesize

TINY = json.dumps({"audio": {"channels": [4, 8], "dim": 8}, "keypoints": {"channels": 8, "dim": 8, "levels": 2}})


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """20 people, voice and hand recorded apart; half of those with the condition show it only in the
    voice, half only in the hand, so each task alone finds half of them; 4 people lack one task."""
    root = tmp_path_factory.mktemp("tasks")
    cfg = SynthConfig(people=20, seed=5, recordings_per_person=2, duration_s=6.0, tasks="separate",
                      missing_task=0.2, phenotypes={"voice": 0.5, "movement": 0.5, "both": 0.0},
                      severity_range=(0.7, 1.0))
    synthesize(cfg, root / "cohort", workers=2, progress=False)
    curate(root / "cohort" / "manifest.csv", root / "curated", default_contract(modalities=["audio", "keypoints"]),
           labels=["healthy", "parkinsons"], workers=2, progress=False)
    return root


def test_separate_tasks_are_separate_rows_and_some_people_lack_one(tasks):
    m = pd.read_csv(tasks / "cohort" / "manifest.csv", keep_default_na=False)
    assert set(m.task) == {"voice", "hand"}
    per_person = m.groupby("person_id").task.agg(lambda t: tuple(sorted(set(t))))
    assert (per_person == ("hand", "voice")).sum() == 16 and len(per_person) == 20
    rec = pd.read_csv(tasks / "curated" / "recordings.csv", keep_default_na=False)
    assert set(rec.modalities) == {"audio", "keypoints"}  # each recording gives only its own task


def test_person_level_fusion_scores_everyone_with_any_task(tasks, capsys):
    """The mechanics on real media: one sample per person, everyone with any task scored by the fused
    models, each task's model only on its people. (That fusion beats each task is checked on feature
    tables in test_tables.py, where a small test can learn; on the 48-person cohort, see the README.)"""
    run = tasks / "run"
    assert main(["train", str(tasks / "curated"), "--out", str(run), "--unit", "person", "--folds", "4",
                 "--epochs", "3", "--fusion-epochs", "5", "--fusions", "gated,concat",
                 "--late", "mean,stacking", "--baselines", "lr", "--encoder-args", TINY, "--seed", "1"]) == 0
    assert main(["evaluate", str(run), "--bootstrap", "50"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    samples = pd.read_csv(run / "samples.csv", keep_default_na=False)
    assert len(samples) == 20 and (samples.fold >= 0).all()  # one sample per person, each tested once
    assert metrics["unit"] == "person" and metrics["complete_samples"] == 16
    models = metrics["models"]
    # every person with any task is scored by the fused models; a single task covers only its people
    for name in ("fused_gated", "fused_concat", "late_mean", "late_stacking", "lr_fused"):
        assert models[name]["coverage"] == 1.0 and models[name]["person"]["n"] == 20, name
    assert models["audio_only"]["coverage"] == 18 / 20 and models["keypoints_only"]["coverage"] == 18 / 20
    # ablations are scored on the people with both tasks
    assert all(e["person"]["n"] == 16 for e in metrics["ablations"])
    table = capsys.readouterr().out
    assert "coverage" in table and "AUC, complete" in table
