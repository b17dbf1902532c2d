"""Training and evaluation end to end on a tiny cohort; splits, leak check, determinism, late fusion."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from symptomfuse.cli import main
from symptomfuse.data.curate import curate
from symptomfuse.data.dataset import load_curated
from symptomfuse.evaluate.calibration import calibrated, fit_temperature
from symptomfuse.evaluate.metrics import compute
from symptomfuse.fusion.late import MeanLate, StackingLate, WeightedLate
from symptomfuse.models.multimodal import MultimodalClassifier, load
from symptomfuse.train.fit import TrainConfig, fit, predict_logits
from symptomfuse.train.splits import LeakError, check_no_leak, person_folds

TINY = json.dumps({"audio": {"channels": [4, 8], "dim": 8}, "video": {"channels": [4, 4], "dim": 8},
                   "keypoints": {"channels": 8, "dim": 8, "levels": 2}})


@pytest.fixture(scope="module")
def curated(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    curate(cohort / "manifest.csv", out, labels=["healthy", "parkinsons"], workers=2, progress=False)
    return out


def test_folds_are_grouped_by_person_and_stratified():
    people = np.repeat([f"p{i}" for i in range(20)], 4)
    y = np.repeat([0, 1] * 10, 4)
    folds, held = person_folds(people, y, k=5, seed=0, held_out=["p0", "p1"])
    assert len(held) == 8 and set(people[held]) == {"p0", "p1"}
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == sorted(set(range(80)) - set(held.tolist()))
    for f in folds:
        for a, b in ((f.train, f.val), (f.train, f.test), (f.val, f.test)):
            assert not set(people[a]) & set(people[b])
        assert set(y[f.test]) == {0, 1}
    with pytest.raises(ValueError, match="at least 5 people in every class"):
        person_folds(people[:16], y[:16], k=5)


def test_leaving_one_person_out_tests_each_person_alone_on_models_trained_on_the_others():
    from symptomfuse.cli import _folds

    people = np.repeat([f"p{i}" for i in range(12)], 3)
    y = np.repeat([0, 1, 2] * 4, 3)  # ratings: four people each
    folds, held = person_folds(people, y, k="loo", seed=0, held_out=["p11"])
    assert len(folds) == 11 and set(people[held]) == {"p11"}
    assert sorted(people[f.test][0] for f in folds) == sorted(f"p{i}" for i in range(11))
    for f in folds:
        assert len(set(people[f.test])) == 1 and len(f.test) == 3  # one person, all of their windows
        assert set(people[f.train]) | set(people[f.val]) == set(people) - set(people[f.test]) - {"p11"}
        assert not set(people[f.train]) & set(people[f.val]) and len(f.val)  # validation people to stop on
    with pytest.raises(ValueError, match="at least 2 people in every class"):
        person_folds(people[:12], y[:12], k="loo")  # p0-p3: classes 1 and 2 have one person each
    assert _folds("loo") == "loo" and _folds("7") == 7


def test_leak_check_refuses_a_person_in_two_splits():
    check_no_leak({"train": np.array(["a", "b"]), "test": np.array(["c"])})
    with pytest.raises(LeakError, match="both 'train' and 'test'"):
        check_no_leak({"train": np.array(["a", "b"]), "test": np.array(["b", "c"])})


def test_late_fusion_models():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.clip(np.stack([1 - y, y], 1) * 0.8 + 0.1 + rng.normal(0, 0.05, (200, 2)), 0.01, 0.99)
    good /= good.sum(1, keepdims=True)
    noise = rng.dirichlet([1, 1], 200)
    probas = {"audio": good, "video": noise}
    w = WeightedLate().fit(probas, y)
    assert w.weights_["audio"] > 0.7
    for fuser in (MeanLate().fit(probas, y), w, StackingLate().fit(probas, y)):
        p = fuser.predict_proba(probas)
        assert p.shape == (200, 2) and np.allclose(p.sum(1), 1)
        assert compute(y, p)["roc_auc"] > 0.9
    assert np.allclose(w.predict_proba({"audio": good}), good)  # a missing modality is renormalised away
    # any subset per sample: rows without a modality carry NaN; a row with none gets NaN
    gappy = {"audio": good.copy(), "video": noise.copy()}
    gappy["audio"][:50] = np.nan
    gappy["video"][40:100] = np.nan
    stack = StackingLate().fit(gappy, y)
    for fuser in (MeanLate().fit(gappy, y), WeightedLate().fit(gappy, y), stack):
        p = fuser.predict_proba(gappy)
        assert np.isnan(p[40:50]).all()  # neither modality
        rest = np.r_[0:40, 50:200]
        assert np.allclose(p[rest].sum(1), 1)
        assert compute(y[50:], p[50:])["roc_auc"] > 0.9  # the samples with audio
    # stacking fits one regression per subset: audio alone uses the audio-only one
    only = stack.predict_proba({"audio": good})
    assert np.allclose(only.sum(1), 1) and compute(y, only)["roc_auc"] > 0.9


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    logits = np.stack([np.zeros(2000), (2 * y - 1) * 1.0 + rng.normal(0, 1.5, 2000)], 1) * 5
    t = fit_temperature(logits, y)
    assert t > 2
    assert compute(y, calibrated(logits, t))["ece"] < compute(y, calibrated(logits, 1.0))["ece"]


def test_training_is_deterministic_and_reloads(curated, tmp_path):
    ws = load_curated(curated, ["keypoints"])
    folds, _ = person_folds(ws.people, ws.y, k=2, seed=0)
    f = folds[0]
    runs = []
    for _ in range(2):
        model = MultimodalClassifier({"keypoints": {"name": "keypoints_tcn", "channels": 8, "dim": 8,
                                                    "levels": 2}}, None, 2, init_seed=1)
        model, hist = fit(model, ws, f.train, f.val, TrainConfig(max_epochs=3, seed=5))
        runs.append(predict_logits(model, ws, f.test))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert len(hist) == 3


def test_skipping_the_nan_fill_of_new_tensors_changes_no_number(curated, monkeypatch):
    """Training no longer fills each new tensor with NaN (deterministic mode's guard); the CNN's predictions
    are the same to the bit as with the filling, and deterministic algorithms stay on."""
    import symptomfuse.train.fit as fit_module

    ws = load_curated(curated, ["audio"])
    f = person_folds(ws.people, ws.y, k=2, seed=0)[0][0]

    def trained():
        model = MultimodalClassifier({"audio": {"name": "logmel_cnn", "channels": [4, 8], "dim": 8}}, None, 2,
                                     init_seed=1)
        model, _ = fit(model, ws, f.train, f.val, TrainConfig(max_epochs=2, seed=5))
        return predict_logits(model, ws, f.test)

    fast = trained()
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.utils.deterministic.fill_uninitialized_memory
    monkeypatch.setattr(fit_module, "skip_filling_new_tensors", lambda: None)
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    filled = trained()
    assert torch.utils.deterministic.fill_uninitialized_memory
    np.testing.assert_array_equal(fast, filled)


def test_train_and_evaluate_cli(curated, tmp_path, capfd):
    run = tmp_path / "run"
    code = main(["train", str(curated), "--out", str(run), "--folds", "2", "--epochs", "2",
                 "--fusion-epochs", "1", "--fusions", "gated,attention", "--encoder-args", TINY,
                 "--batch-size", "16", "--baselines", "lr", "--fusion-modalities", "audio,keypoints"])
    assert code == 0
    shown = "".join(capfd.readouterr())  # the training workers' output too
    assert "trained" in shown and not any(chatter in shown for chatter in ("GPU available", "Tip:", "Trainer.fit"))
    # export before evaluate (as `make demo` runs them, side by side) ranks the fused models by the figure
    # evaluate reports: the same choice and the same numbers as metrics.json gives afterwards
    assert main(["export", str(run), "--out", str(tmp_path / "model"), "--no-onnx"]) == 0
    assert not (run / "metrics.json").exists()
    source = json.loads((tmp_path / "model" / "export.json").read_text())["source"]
    assert main(["evaluate", str(run), "--bootstrap", "50"]) == 0
    out = capfd.readouterr().out
    assert "fused_gated" in out and "late_stacking" in out
    metrics = json.loads((run / "metrics.json").read_text())
    top = metrics["top_level"]
    assert source["roc_auc_level"] == top and set(source["cross_validated_roc_auc"]) == {
        "fused_gated", "fused_attention", "audio_only", "video_only", "keypoints_only"}
    for name, auc in source["cross_validated_roc_auc"].items():
        assert auc == metrics["models"][name][top]["roc_auc"], name
    fused = ("fused_gated", "fused_attention")
    assert json.loads((tmp_path / "model" / "export.json").read_text())["primary"] == max(
        fused, key=lambda n: metrics["models"][n][top]["roc_auc"])
    assert metrics["protocol"]["folds"] == 2 and metrics["protocol"]["people"] == 8
    for name in ("audio_only", "video_only", "keypoints_only", "fused_gated", "fused_attention",
                 "late_mean", "late_weighted", "late_stacking"):
        e = metrics["models"][name]
        for level in ("person", "recording", "window"):
            for key in ("roc_auc", "roc_auc_ci", "balanced_accuracy", "sensitivity", "specificity", "brier", "ece"):
                assert key in e[level], (name, level, key)
            assert e[level]["roc_auc_ci"][0] <= e[level]["roc_auc_ci"][1]
    assert metrics["models"]["fused_gated"]["fusion"] == "gated"
    assert metrics["models"]["audio_only"]["modalities"] == ["audio"]
    assert {"model": "fused_gated", "dropped": ["audio"]}.items() <= {
        k: v for e in metrics["ablations"] for k, v in e.items() if e["dropped"] == ["audio"]
        and e["model"] == "fused_gated"}.items()
    # per fold, the model that did best on that fold's validation people (late fusions fit on them: never),
    # whose test predictions it then gives
    records = json.loads((run / "run.json").read_text())["models"]["chosen_on_val"]["folds"]
    assert [c["chosen"] for c in metrics["models"]["chosen_on_val"]["choices"]] == [r["chosen"] for r in records]
    samples = pd.read_csv(run / "samples.csv")
    chosen = pd.read_csv(run / "predictions" / "chosen_on_val.csv").set_index("sample_index")
    for r in records:
        best = max(r["scores"].values())
        tied = [n for n, v in r["scores"].items() if v == best]  # ties: the lowest log loss
        assert r["chosen"] == min(tied, key=r["log_loss"].get) and not any(n.startswith("late_") for n in r["scores"])
        rows = samples.index[samples.fold == r["fold"]]
        source_preds = pd.read_csv(run / "predictions" / f"{r['chosen']}.csv").set_index("sample_index")
        np.testing.assert_array_equal(chosen.loc[rows].to_numpy(), source_preds.loc[rows].to_numpy())
    assert "chosen_on_val: in each fold, the model with the best" in out
    # exporting it exports the network it chose in that fold; a fold where it chose a baseline is refused
    for r in records:
        folder = tmp_path / f"chosen{r['fold']}"
        code = main(["export", str(run), "--out", str(folder), "--model", "chosen_on_val", "--fold", str(r["fold"]),
                     "--no-onnx"])
        if r["chosen"].startswith("lr_"):
            assert code == 2 and f"chose {r['chosen']} in fold {r['fold']}, a baseline" in capfd.readouterr().err
        else:
            spec = json.loads((folder / "export.json").read_text())
            assert code == 0 and spec["primary"] == r["chosen"]
            assert spec["source"]["chosen_by"] == {"model": "chosen_on_val", "chose": r["chosen"]}
    for name in ("lr_audio", "lr_keypoints", "lr_fused"):  # baselines under the same folds
        assert metrics["models"][name]["kind"] == "baseline" and 0 <= metrics["models"][name]["person"]["roc_auc"] <= 1
    # every window of every person has an out-of-fold prediction
    windows = pd.read_csv(run / "samples.csv")
    assert (windows.fold >= 0).all()
    pred = pd.read_csv(run / "predictions" / "fused_gated.csv")
    assert len(pred) == len(windows) and np.allclose(pred.filter(like="p_").sum(axis=1), 1)
    html = (run / "report.html").read_text()
    assert "Research tool, not a diagnosis" in html
    for png in ("roc", "confusion", "reliability", "training_curves", "person_strip"):
        assert (run / "report" / f"{png}.png").stat().st_size > 1000
    # a saved fold model, rebuilt from safetensors + JSON, gives the run's own out-of-fold predictions
    ws = load_curated(curated, ["audio", "keypoints"])
    model = load(run / "models" / "fused_gated" / "fold0")
    t = json.loads((run / "run.json").read_text())["models"]["fused_gated"]["folds"][0]["temperature"]
    test = windows.index[windows.fold == 0].to_numpy()
    with torch.no_grad():
        again = calibrated(predict_logits(model, ws, test), t)
    saved = pred.set_index("sample_index").loc[test].filter(like="p_").to_numpy()
    np.testing.assert_allclose(again, saved, atol=1e-5)
    # the fused models took their encoders' embeddings from the single model-folds' files: the same numbers
    # as running those encoders, which is also what a missing or ill-fitting file falls back to
    from safetensors.torch import save_file

    from symptomfuse.train.crossval import EMBEDDINGS, FoldEmbeddings

    folders = {m: run / "models" / f"{m}_only" / "fold0" for m in ("audio", "keypoints")}
    cached = FoldEmbeddings.load(model, ws, folders)
    computed = FoldEmbeddings.compute(model, ws)
    for m in folders:
        assert (folders[m] / EMBEDDINGS).exists()
        torch.testing.assert_close(cached.values[m], computed.values[m], rtol=0, atol=1e-5)
    save_file({"embeddings": torch.zeros(3, 8), "present": torch.ones(3, dtype=torch.bool)},
              str(folders["audio"] / EMBEDDINGS))  # another data set's
    torch.testing.assert_close(FoldEmbeddings.load(model, ws, folders).values["audio"], computed.values["audio"])
    (folders["audio"] / EMBEDDINGS).write_bytes(b"not safetensors" * 8)  # damaged
    torch.testing.assert_close(FoldEmbeddings.load(model, ws, folders).values["audio"], computed.values["audio"])


def test_frozen_encoders_train_only_the_fusion_and_head(curated):
    ws = load_curated(curated, ["audio", "keypoints"])
    f = person_folds(ws.people, ws.y, k=2, seed=0)[0][0]
    enc = json.loads(TINY)
    model = MultimodalClassifier({"audio": {"name": "logmel_cnn", **enc["audio"]},
                                  "keypoints": {"name": "keypoints_tcn", **enc["keypoints"]}},
                                 {"name": "gated", "dim": 8}, 2, init_seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model, hist = fit(model, ws, f.train, f.val, TrainConfig(max_epochs=2, freeze_encoders=True))
    after = model.state_dict()
    assert len(hist) == 2
    for k, v in after.items():
        if k.startswith("encoders."):
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # weights, scalers and batch-norm stats
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith(("fusion.", "head.")))
    assert np.isfinite(predict_logits(model, ws, f.test, drop=("audio",))).all()


def test_hand_written_metrics_agree_with_scikit_learn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    for k in (2, 4):
        y = rng.integers(0, k, 300)
        logits = rng.normal(size=(300, k)) + np.eye(k)[y] * 1.5
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        ours = compute(y, proba)
        pred = proba.argmax(1) if k > 2 else (proba[:, 1] >= 0.5).astype(int)
        auc = skm.roc_auc_score(y, proba[:, 1]) if k == 2 else skm.roc_auc_score(y, proba, multi_class="ovr")
        assert np.isclose(ours["roc_auc"], auc)
        assert np.isclose(ours["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
        assert np.isclose(ours["accuracy"], skm.accuracy_score(y, pred))
        assert np.isclose(ours["brier"], np.mean(np.sum((proba - np.eye(k)[y]) ** 2, axis=1)))
        if k == 2:
            assert np.isclose(ours["sensitivity"], skm.recall_score(y, pred))
            assert np.isclose(ours["specificity"], skm.recall_score(1 - y, 1 - pred))
            assert np.isclose(ours["f1"], skm.f1_score(y, pred))
            assert np.isclose(ours["brier"], 2 * skm.brier_score_loss(y, proba[:, 1]))
        else:
            assert np.isclose(ours["sensitivity"], skm.recall_score(y, pred, average="macro"))
            assert np.isclose(ours["f1"], skm.f1_score(y, pred, average="macro"))
        # ECE by its definition, bin by bin with masks; the AUC's ranks are scipy's, ties included
        conf, correct = proba.max(1), proba.argmax(1) == y
        bins = np.minimum((conf * 10).astype(int), 9)
        ece = sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * np.mean(bins == b)
                  for b in range(10) if np.any(bins == b))
        assert ours["ece"] == ece  # to the bit: the bootstrap's intervals do not move
        assert ours["balanced_accuracy"] == np.mean([np.mean(pred[y == c] == c) for c in range(k)])  # to the bit
    # a class no sample has: balanced accuracy is the mean recall of the classes present
    y3, p3 = rng.integers(0, 2, 100), rng.dirichlet(np.ones(3), 100)
    assert compute(y3, p3)["balanced_accuracy"] == np.mean([np.mean(p3.argmax(1)[y3 == c] == c) for c in (0, 1)])
    from scipy.stats import rankdata

    from symptomfuse.evaluate.metrics import _average_ranks

    tied = np.round(rng.random(500), 1)
    assert np.array_equal(_average_ranks(tied), rankdata(tied))


def test_a_modality_no_recording_has_is_left_out_or_refused(cohort, tmp_path, capsys):
    """keypoints is curated by default; rows without landmarks leave it empty: train skips it (and says
    so), and asking for it by name is refused with a message, not a crash deep in a fold."""
    m = pd.read_csv(cohort / "manifest.csv").drop(columns=["keypoints"])
    m["path"] = [str(cohort / p) for p in m.path]
    m.to_csv(tmp_path / "m.csv", index=False)
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c"), "--labels", "healthy,parkinsons",
                 "--workers", "2"]) == 0
    capsys.readouterr()
    base = ["train", str(tmp_path / "c"), "--folds", "2", "--epochs", "1", "--fusions", "", "--late", "",
            "--baselines", "", "--encoder-args", TINY.replace('"keypoints": {"channels": 8, "dim": 8, "levels": 2}', "")
            .replace(', }', '}')]
    assert main([*base, "--out", str(tmp_path / "r")]) == 0
    assert "not trained: keypoints" in capsys.readouterr().err
    assert sorted(json.loads((tmp_path / "r" / "run.json").read_text())["models"]) == [
        "audio_only", "chosen_on_val", "video_only"]
    assert main([*base, "--out", str(tmp_path / "r2"), "--modalities", "keypoints"]) == 2
    assert "no curated recording" in capsys.readouterr().err


def test_a_modality_too_few_people_have_is_refused_before_a_fold_fails(cohort, tmp_path, capsys):
    """Landmarks for one person only: with 2 folds, one fold has no training window of keypoints. train
    says so, and what to do, instead of failing inside that fold (it used to: "num_samples=0")."""
    m = pd.read_csv(cohort / "manifest.csv", keep_default_na=False)
    m["path"] = [str(cohort / p) for p in m.path]
    m["keypoints"] = [str(cohort / k) if person == m.person_id.iloc[0] else "" for k, person in zip(m.keypoints, m.person_id)]
    m.to_csv(tmp_path / "m.csv", index=False)
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c"), "--labels", "healthy,parkinsons",
                 "--modalities", "audio,keypoints", "--workers", "2"]) == 0
    capsys.readouterr()
    tiny = json.dumps({m: e for m, e in json.loads(TINY).items() if m != "video"})
    assert main(["train", str(tmp_path / "c"), "--out", str(tmp_path / "r"), "--folds", "2", "--epochs", "1",
                 "--fusions", "", "--late", "", "--baselines", "", "--encoder-args", tiny]) == 2
    err = capsys.readouterr().err
    assert "keypoints: fold" in err and "(1 people have it)" in err and "fewer --folds" in err


def test_a_fold_whose_training_people_are_all_of_one_class_is_refused(curated, capsys):
    """8 people, one of each class held out, 2 folds: a fold keeps 3 people of each class for test, and of
    the others its validation split takes the only one of a class. train says so, and what to do, instead
    of fitting networks on one class and failing in scikit-learn ("needs samples of at least 2 classes")."""
    w = pd.read_csv(curated / "windows.csv")
    held = [w.person_id[w.label == c].iloc[0] for c in ("healthy", "parkinsons")]
    assert main(["train", str(curated), "--out", str(curated.parent / "one-class"), "--folds", "2", "--epochs", "1",
                 "--held-out", ",".join(held), "--encoder-args", TINY]) == 2
    err = capsys.readouterr().err
    assert "trains on 1 person, all '" in err and "nothing to tell apart" in err and "--folds loo" in err
    assert not (curated.parent / "one-class" / "run.json").exists()


def test_prepared_inputs_from_a_store_give_the_same_numbers(curated):
    """A training worker keeps every window's prepared inputs in a PreparedStore for its later model-folds,
    and a fold's training, predictions and embeddings read them there: the same numbers to the bit as
    preparing them as needed, windows that lack a modality included. A store too small for a model's
    inputs is not used, and the numbers stay the same."""
    from dataclasses import replace

    from symptomfuse.train.crossval import FoldEmbeddings
    from symptomfuse.train.fit import PreparedStore

    ws = load_curated(curated, ["audio", "video"])
    rows = {**ws.rows, "video": ws.rows["video"].copy()}
    rows["video"][::3] = -1  # a third of the windows lack video
    ws = replace(ws, rows=rows)
    f = person_folds(ws.people, ws.y, k=2, seed=0)[0][0]
    enc = json.loads(TINY)
    spec = {"audio": {"name": "logmel_cnn", **enc["audio"]}, "video": {"name": "frames_cnn", **enc["video"]}}
    small = PreparedStore(ws, budget_mb=0.01)
    results = []
    for store in (None, PreparedStore(ws, budget_mb=512), small):
        model = MultimodalClassifier(spec, {"name": "gated", "dim": 8}, 2, init_seed=0)
        model, hist = fit(model, ws, f.train, f.val, TrainConfig(max_epochs=2, seed=1, batch_size=16), store)
        with torch.no_grad():
            results.append((hist, predict_logits(model, ws, f.test, store=store),
                            predict_logits(model, ws, f.test, drop=("audio",), store=store),
                            FoldEmbeddings.compute(model, ws, store).values))
    assert small.inputs(model) is None
    reference = results[0]
    assert np.isnan(reference[2]).any() and np.isfinite(reference[1]).all()
    for hist, logits, without_audio, emb in results[1:]:
        assert hist == reference[0]
        np.testing.assert_array_equal(logits, reference[1])
        np.testing.assert_array_equal(without_audio, reference[2])
        for m in spec:
            assert torch.equal(emb[m], reference[3][m])


def test_planning_a_run_does_not_import_lightning():
    """`train`'s main process plans the model-folds and collects their results; Lightning (about 3 s a
    process) is imported only where a model is fitted, in the workers."""
    import subprocess
    import sys

    code = "import sys, symptomfuse.train.crossval, symptomfuse.train.fit; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_baseline_features_kept_per_process_are_those_of_any_subset(curated):
    """The baselines' features are computed once for every window and each fold takes its rows: the same
    numbers, to the bit, as summarising just that fold's windows, for every modality."""
    from symptomfuse.train.crossval import BaselineFeatures

    ws = load_curated(curated, ["audio", "video", "keypoints"])
    features = BaselineFeatures(ws)
    rng = np.random.default_rng(0)
    for subset in (np.arange(len(ws.y))[::3], rng.permutation(len(ws.y))[:7]):
        for m in ("audio", "video", "keypoints"):
            direct = ws.contract.modality(m).baseline_features(ws.take(m, subset))
            np.testing.assert_array_equal(features.rows(m, subset), direct)


def test_the_model_chosen_on_validation_people_never_looks_at_test_people():
    """``chosen_on_val`` takes, per fold, the candidate that does best on the fold's validation samples:
    among those that predict the most of them; by ROC AUC, or by the mean absolute error for ratings. What
    the candidates predict for test people changes their test figures and never the choice."""
    from symptomfuse.artifacts import ModelSpec
    from symptomfuse.train.crossval import CHOSEN, Samples, choose_on_validation, default_specs
    from symptomfuse.train.splits import Fold

    rng = np.random.default_rng(0)
    n = 40
    table = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "person_id": [f"p{i}" for i in range(n)],
                          "y": np.tile([0, 1], n // 2)})
    samples = Samples("person", table, np.arange(n))
    fold = Fold(0, train=np.arange(0, 20), val=np.arange(20, 30), test=np.arange(30, 40))
    y = table.y.to_numpy()

    def probs(good_on_val: bool, good_on_test: bool, drop_val: int = 0):
        score = rng.uniform(0.3, 0.7, n)
        for part, good in ((fold.val, good_on_val), (fold.test, good_on_test)):
            score[part] = np.where(y[part] == 1, 0.8, 0.2) if good else np.where(y[part] == 1, 0.2, 0.8)
        p = np.stack([1 - score, score], axis=1)
        p[fold.val[:drop_val]] = np.nan  # a candidate that predicts fewer validation samples
        return p

    candidates = {"a": probs(False, True), "b": probs(True, False), "c": probs(True, True, drop_val=2)}
    val = {(c, 0): np.where(np.isin(np.arange(n), fold.val)[:, None], p, np.nan) for c, p in candidates.items()}
    preds = {(c, ()): p for c, p in candidates.items()}
    spec = ModelSpec(CHOSEN, ["audio"], candidates=["a", "b", "c"])
    record, arrays = choose_on_validation(samples, spec, fold, val, val, preds)
    # c predicts fewer validation samples, a does worse on them: b, though it is the worst on test people
    assert record["chosen"] == "b" and record["by"] == "roc_auc" and record["validation_samples"] == 10
    assert set(record["scores"]) == {"a", "b"} and record["scores"]["b"] == 1.0 and record["scores"]["a"] == 0.0
    np.testing.assert_array_equal(arrays["test0"], candidates["b"][fold.test])
    np.testing.assert_array_equal(arrays["rows"], fold.test)
    preds[("b", ())] = preds[("a", ())]  # other test predictions: the same choice
    assert choose_on_validation(samples, spec, fold, val, val, preds)[0]["chosen"] == "b"
    # a tie (both separate the validation people perfectly): the lower log loss, though listed second
    sure = val[("b", 0)].copy()
    sure[fold.val] = np.where(y[fold.val, None] == np.arange(2), 0.95, 0.05)
    val[("d", 0)], preds[("d", ())] = sure, sure
    record, _ = choose_on_validation(samples, ModelSpec(CHOSEN, ["audio"], candidates=["b", "d"]), fold, val, val, preds)
    assert record["scores"] == {"b": 1.0, "d": 1.0} and record["chosen"] == "d"
    assert record["log_loss"]["d"] < record["log_loss"]["b"]

    # ratings: the mean absolute error of the predicted rating
    values = np.array([0.0, 1.0, 2.0])
    table3 = table.assign(y=np.arange(n) % 3)
    near = np.eye(3)[(table3.y.to_numpy() + 1).clip(max=2)]  # one off, mostly
    far = np.eye(3)[2 - table3.y.to_numpy()]  # 0 <-> 2: two off
    val3 = {("near", 0): near, ("far", 0): far}
    spec3 = ModelSpec(CHOSEN, ["audio"], candidates=["far", "near"])
    record, _ = choose_on_validation(Samples("person", table3, np.arange(n)), spec3, fold, val3, val3,
                                     {("near", ()): near, ("far", ()): far}, values)
    assert record["chosen"] == "near" and record["by"] == "mae" and record["scores"]["near"] > record["scores"]["far"]

    # every run with two or more models but late fusions gets it, choosing among them all but late fusions
    specs = default_specs({"audio": {"name": "a"}, "video": {"name": "v"}}, ["gated"], ["mean"], ["audio", "video"],
                          ["lr"])
    chosen = [s for s in specs if s.kind == "chosen"]
    assert len(chosen) == 1 and chosen[0].name == CHOSEN and specs[-1] is chosen[0]
    assert chosen[0].candidates == ["audio_only", "video_only", "fused_gated", "lr_audio", "lr_video", "lr_fused"]
    assert not [s for s in default_specs({"audio": {"name": "a"}}, [], [], ["audio"]) if s.kind == "chosen"]
