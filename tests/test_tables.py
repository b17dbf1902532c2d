"""Feature tables as modalities: column selection, missing values, label leaks, baselines, the positive
class, and a table fused per person with another table (separately recorded tasks)."""

import json

import numpy as np
import pandas as pd
import pytest

from symptomfuse.cli import main
from symptomfuse.errors import UsageError


def _people(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["control", "case"])[rng.integers(0, 2, n)]
    # half of the cases show it in the voice table, half in the smile table
    where = np.where(y == "case", rng.choice(["voice", "smile"], n), "")
    return [f"S{i:02d}" for i in range(n)], y, where, rng


@pytest.fixture
def tables(tmp_path):
    ids, y, where, rng = _people()
    voice, smile = [], []
    for pid, label, w in zip(ids, y, where):
        for k in range(3):
            voice.append({"subject": f"{pid}_{k}", "diagnosis": label, "jitter": rng.normal(1 + 1.5 * (w == "voice"), 0.5),
                          "shimmer": rng.normal(0, 1), "hnr": np.nan if rng.random() < 0.2 else rng.normal(20, 2),
                          "note": "ok", "tremor": "see notes" if (pid, k) in (("S03", 1), ("S07", 2)) else 0.5})
        smile.append({"subject": f"{pid}_0", "diagnosis": label, "smile_au12": rng.normal(1 - 1.5 * (w == "smile"), 0.5),
                      "smile_au06": rng.normal(0, 1), "age": rng.integers(40, 80)})
    drop = set(ids[:6])  # six people never did the smile task
    smile = [r for r in smile if r["subject"][:3] not in drop]
    pd.DataFrame(voice).to_csv(tmp_path / "voice.csv", index=False)
    pd.DataFrame(smile).to_parquet(tmp_path / "smile.parquet")
    return tmp_path


def _curate(tables, out, *extra):
    return main(["curate", "--table", f"voice={tables / 'voice.csv'}",
                 "--table", f"smile={tables / 'smile.parquet'}::prefix:smile_", "--out", str(out),
                 "--person-col", "subject", "--person-pattern", r"(S\d+)", "--label-col", "diagnosis",
                 "--positive", "case", *extra])


def test_tables_curate_with_columns_chosen_missing_values_kept_and_the_positive_class_last(tables, capsys):
    out = tables / "cur"
    assert _curate(tables, out) == 0
    contract = json.loads((out / "contract.json").read_text())
    assert contract["classes"] == ["control", "case"] and contract["positive"] == "case"
    assert contract["modalities"]["voice"]["settings"]["columns"] == ["jitter", "shimmer", "hnr"]  # numeric, not ids
    assert contract["modalities"]["smile"]["settings"]["columns"] == ["smile_au12", "smile_au06"]  # prefix
    rec = pd.read_csv(out / "recordings.csv", keep_default_na=False)
    assert rec.person_id.nunique() == 60 and len(rec) == 180 + 54
    shown = capsys.readouterr().out
    assert "classes: control, case; positive class: case" in shown
    # a column of numbers with two text cells is left out, and curate says so (a column of text alone is not news)
    assert "table voice: column(s) left out, since some of their values are not numbers: tremor (2 of 180 values " \
           "are not numbers, e.g. 'see notes')" in shown and "::numeric-except:tremor" in shown and "note (" not in shown
    assert json.loads((out / "summary.json").read_text())["columns_left_out"] == {
        "voice": {"tremor": "2 of 180 values are not numbers, e.g. 'see notes'"}}


def test_two_classes_need_an_explicit_positive_class(tables, capsys):
    code = main(["curate", "--table", f"voice={tables / 'voice.csv'}", "--out", str(tables / "c2"),
                 "--person-col", "subject", "--label-col", "diagnosis"])
    assert code == 2 and "--positive" in capsys.readouterr().err


def test_a_positive_class_whose_rows_all_failed_says_why(tmp_path, capsys):
    """--positive pd when every pd row was set aside (here: no feature value) names the reasons, not an
    empty list of classes."""
    rows = ["person_id,label,f1"] + [f"h{i},hc,{i}" for i in range(4)] + [f"p{i},pd," for i in range(3)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert main(["curate", "--table", f"x={tmp_path / 't.csv'}", "--out", str(tmp_path / "c"), "--positive", "pd"]) == 2
    err = capsys.readouterr().err
    assert "--positive 'pd' is not the label of any row that passed the checks (labels found: ['hc'])" in err
    assert "3 row(s) failed them: missing_field 3 (e.g. row 4: table x: every feature is empty)" in err


def test_one_class_is_curated_for_checking_but_refused_by_training_with_the_reason(tmp_path, capsys):
    """Rows of one class can be curated (to check the recordings), but training says what is wrong: the
    other class's rows were all set aside, or the label sheet had one class; a class of one person cannot
    be split into folds."""
    import numpy as np

    from symptomfuse.train.splits import person_folds

    rows = ["person_id,label,f1"] + [f"h{i},hc,{i}" for i in range(6)] + [f"p{i},pd," for i in range(6)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")  # the pd rows have no value: quarantined
    assert main(["curate", "--table", f"x={tmp_path / 't.csv'}", "--out", str(tmp_path / "c"), "--labels", "hc,pd"]) == 0
    assert "every usable recording has the label 'hc', and `train` needs two classes or more" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "c"), "--out", str(tmp_path / "r"), "--epochs", "1"]) == 2
    assert "every usable recording has the label 'hc', and a classifier needs two classes or more" in capsys.readouterr().err

    (tmp_path / "one.csv").write_text("\n".join(rows[:7]) + "\n")
    assert main(["curate", "--table", f"x={tmp_path / 'one.csv'}", "--out", str(tmp_path / "c1")]) == 0
    assert main(["train", str(tmp_path / "c1"), "--out", str(tmp_path / "r1"), "--epochs", "1"]) == 2
    assert "the curated data holds one class, 'hc': a classifier needs two or more" in capsys.readouterr().err

    with pytest.raises(UsageError, match="the smallest class has 1. A class needs 2 people or more"):
        person_folds(np.array(["a", "b", "c", "d"]), np.array([0, 0, 0, 1]), 3)


def test_held_out_people_not_in_the_data_are_named(tmp_path, capsys):
    """--held-out with an id spelt otherwise would quietly leave that person in the folds: it is named."""
    rows = ["person_id,label,f1"] + [f"h{i},hc,{i}" for i in range(6)] + [f"p{i},pd,{i + 10}" for i in range(6)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert main(["curate", "--table", f"x={tmp_path / 't.csv'}", "--out", str(tmp_path / "c"), "--positive", "pd"]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "c"), "--out", str(tmp_path / "r"), "--folds", "2", "--epochs", "1",
                 "--held-out", "h0,H1", "--baselines", "", "--workers", "1"]) == 0
    assert (f"--held-out: 1 of its 2 people are not in {tmp_path / 'c'} (no curated row, or an id spelt otherwise): "
            "held out 1, e.g. H1") in capsys.readouterr().err


def test_a_label_map_value_that_no_cell_has_is_named(tmp_path, capsys):
    """--label-map 1.0=pd where the cells say 1 maps nothing, silently: the summary names it. The flag may
    be repeated."""
    rows = ["person_id,label,f1"] + [f"h{i},0,{i}" for i in range(4)] + [f"p{i},1,{i + 10}" for i in range(4)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert main(["curate", "--table", f"x={tmp_path / 't.csv'}", "--out", str(tmp_path / "c"), "--label-map", "0=hc",
                 "--label-map", "1.0=pd", "--labels", "hc,pd"]) == 0
    out = capsys.readouterr().out
    assert "--label-map 1.0=...: no label cell is '1.0' (the label cells are e.g. '0', '1'); check how it is spelt" in out
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["label_map_unused"] == {"1.0": ["0", "1"]} and summary["quarantined_by_reason"] == {"unknown_label": 4}


def test_a_column_that_gives_the_label_away_is_refused_by_name(tables, capsys):
    df = pd.read_csv(tables / "voice.csv")
    df["Diagnosis_code"] = (df.diagnosis == "case").astype(int)  # the label, recoded
    df.to_csv(tables / "voice.csv", index=False)
    assert _curate(tables, tables / "cur") == 0
    run = ["train", str(tables / "cur"), "--out", str(tables / "run"), "--modalities", "voice", "--folds", "3",
           "--epochs", "3", "--baselines", "lr"]
    capsys.readouterr()
    assert main(run) == 2
    err = capsys.readouterr().err
    assert "Diagnosis_code" in err and "jitter" not in err
    assert main(run + ["--allow-separating-columns"]) == 0


def test_tables_fused_per_person_score_everyone(tables, capsys):
    assert _curate(tables, tables / "cur") == 0
    run = tables / "run"
    assert main(["train", str(tables / "cur"), "--out", str(run), "--unit", "person", "--folds", "4",
                 "--epochs", "40", "--patience", "8", "--fusion-epochs", "40", "--fusions", "gated,uncertainty",
                 "--late", "mean,stacking", "--baselines", "lr,rf"]) == 0
    assert main(["evaluate", str(run), "--bootstrap", "100"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    models = m["models"]
    assert m["samples"] == 60 and m["complete_samples"] == 54
    for name in ("fused_gated", "fused_uncertainty", "late_mean", "late_stacking", "lr_fused", "rf_fused"):
        assert models[name]["coverage"] == 1.0 and models[name]["person"]["n"] == 60, name
    assert models["smile_only"]["coverage"] == 54 / 60 and models["voice_only"]["coverage"] == 1.0
    best_single = max(models[n]["complete"]["person"]["roc_auc"] for n in ("voice_only", "smile_only"))
    best_fused = max(models[n]["complete"]["person"]["roc_auc"] for n in ("fused_gated", "fused_uncertainty"))
    assert best_fused >= best_single + 0.03, (best_fused, best_single)
    # sensitivity is about the positive class, "case", whatever its name sorts as
    assert m["positive"] == "case" and m["classes"][-1] == "case"


def test_ids_that_look_missing_stay_people(tmp_path):
    df = pd.DataFrame({"subject": ["NA", "nan", "null", "NA", "nan", "null"] * 4,
                       "diagnosis": ["a", "b", "a", "a", "b", "a"] * 4,
                       "x": np.arange(24.0)})
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["curate", "--table", f"t={tmp_path / 't.csv'}", "--out", str(tmp_path / "c"),
                 "--person-col", "subject", "--label-col", "diagnosis", "--labels", "a,b"]) == 0
    rec = pd.read_csv(tmp_path / "c" / "recordings.csv", dtype=str, keep_default_na=False)
    assert sorted(rec.person_id.unique()) == ["NA", "nan", "null"]


def test_a_fixed_split_scores_test_people_once_and_cannot_leak(tables, capsys):
    """UFNet's protocol: train / dev (choices) / calib (temperature) / test (scored once), by person; a
    person in two of them is refused. Labels spelt differently by two tables are mapped to one class."""
    smile = pd.read_parquet(tables / "smile.parquet")
    smile["diagnosis"] = smile.diagnosis.map({"case": "yes", "control": "no"})
    smile.to_parquet(tables / "smile.parquet")
    assert main(["curate", "--table", f"voice={tables / 'voice.csv'}", "--table",
                 f"smile={tables / 'smile.parquet'}::prefix:smile_", "--out", str(tables / "cur"),
                 "--person-col", "subject", "--person-pattern", r"(S\d+)", "--label-col", "diagnosis",
                 "--label-map", "yes=case,no=control", "--labels", "control,case"]) == 0
    assert pd.read_csv(tables / "cur" / "quarantine.csv").empty  # no conflicting labels once mapped
    ids = [f"S{i:02d}" for i in range(60)]
    split = pd.DataFrame({"person_id": ids[:36], "split": ["dev"] * 12 + ["calib"] * 12 + ["test"] * 12})
    split.to_csv(tables / "split.csv", index=False)
    run = tables / "run"
    assert main(["train", str(tables / "cur"), "--out", str(run), "--unit", "person", "--split-file",
                 str(tables / "split.csv"), "--epochs", "5", "--fusions", "gated", "--late", "mean",
                 "--baselines", "lr"]) == 0
    demo = pd.DataFrame({"id": ids, "Sex": ["Female", "Male"] * 30, "Age": np.linspace(35, 85, 60).round()})
    demo.to_csv(tables / "demo.csv", index=False)
    # a wrong attribute column is refused before any work (the predictions are not even read)
    from symptomfuse.evaluate import report

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "load_predictions", lambda run: pytest.fail("evaluated before checking --subgroups"))
        assert main(["evaluate", str(run), "--subgroups", str(tables / "demo.csv"), "--subgroup-person-col", "id",
                     "--subgroup-cols", "sex,height"]) == 2
    assert "no column(s) ['height']" in capsys.readouterr().err and not (run / "metrics.json").exists()
    # ids of no tested person (here: the wrong person column) are refused before scoring, not all 'unknown'
    assert main(["evaluate", str(run), "--subgroups", str(tables / "demo.csv"), "--subgroup-person-col", "Sex"]) == 2
    assert "none of the run's 12 tested people is in the file" in capsys.readouterr().err
    assert not (run / "metrics.json").exists()
    assert main(["evaluate", str(run), "--bootstrap", "50", "--subgroups", str(tables / "demo.csv"),
                 "--subgroup-person-col", "id", "--subgroup-cols", "sex,age", "--importance",
                 "--mc-dropout", "5"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    # why: each modality's contribution to each fused prediction, and the features that matter, by name
    contrib = m["models"]["fused_gated"]["contributions"]
    assert set(contrib) == {"voice", "smile"} and all(v["mean_abs"] >= 0 for v in contrib.values())
    per_person = pd.read_csv(run / "contributions" / "fused_gated.csv", keep_default_na=False)
    assert len(per_person) == 12 and {"contribution_voice", "contribution_smile"} <= set(per_person.columns)
    importance = m["feature_importance"]
    assert importance["voice"]["top"][0]["feature"] == "jitter"  # the one voice column that carries the signs
    assert importance["smile"]["top"][0]["feature"] == "smile_au12"
    mc = m["mc_dropout"]["voice_only"]  # dropout-on passes over the held-out people
    assert mc["passes"] == 5 and mc["people"] == 12 and mc["mean_spread"] > 0
    assert [c["coverage"] for c in mc["accuracy_coverage"]][0] == 1.0
    fused = m["mc_dropout"]["fused_gated"]  # fused per person: dropout in encoders, fusion and head
    assert fused["people"] == 12 and fused["mean_spread"] > 0
    cells = m["models"]["fused_gated"]["subgroups"]
    for attribute in ("Sex", "Age"):  # every test person in exactly one cell of each attribute
        assert sum(c["people"] for c in cells if c["attribute"] == attribute) == 12
    assert {c["group"] for c in cells if c["attribute"] == "Age"} <= {"<50", "50-59", "60-69", "70+"}
    assert "Age" in m["attribute_auc"] and m["attribute_auc"]["Age"]["people"] == 12
    assert set(m["models"]["fused_gated"]["stratified_auc"]) == {"Sex", "Age"}
    assert m["protocol"]["split"] == "fixed"
    assert m["protocol"]["split_people"] == {"train": 24, "dev": 12, "calib": 12, "test": 12}
    assert m["samples"] == 12 and m["models"]["fused_gated"]["person"]["n"] == 12  # test people only
    assert set(m["dev"]) >= {"voice_only", "smile_only", "fused_gated", "late_mean", "lr_fused"}
    for name in ("fused_gated", "late_mean", "lr_fused"):  # conformal sets calibrated on calib people
        conf = {c["nominal"]: c for c in m["models"][name]["conformal"]}
        assert set(conf) == {0.9, 0.95} and conf[0.9]["calib_people"] == 12 and conf[0.9]["test_people"] == 12
        assert 0 <= conf[0.9]["coverage"] <= 1 and 1 <= conf[0.95]["mean_set_size"] <= 2
        lo, hi = conf[0.9]["expected_range"]
        assert 0 <= lo < 0.9 < hi <= 1 and 0 <= conf[0.9]["dev_coverage"] <= 1  # dev: a check beside test
        curve = m["models"][name]["accuracy_coverage"]
        assert curve[0]["coverage"] == 1.0 and curve[0]["kept"] == 12
    samples = pd.read_csv(run / "samples.csv", keep_default_na=False)
    assert set(samples.person_id[samples.fold == 0]) == set(ids[24:36])
    # a person in two splits is refused before anything trains
    pd.concat([split, pd.DataFrame({"person_id": [ids[0]], "split": ["test"]})]).to_csv(tables / "bad.csv", index=False)
    capsys.readouterr()
    assert main(["train", str(tables / "cur"), "--out", str(tables / "r2"), "--split-file", str(tables / "bad.csv")]) == 2
    assert "two splits" in capsys.readouterr().err



def test_person_attributes_are_grouped_by_what_they_are():
    from symptomfuse.evaluate.report import attribute_groups

    age = pd.Series(["49", "50", "69.5", "70", "", "81"] + ["65"] * 5)  # one blank in 11: still a number column
    assert attribute_groups("Age", age).tolist()[:6] == ["<50", "50-59", "60-69", "70+", "unknown", "70+"]
    assert attribute_groups("age_at_visit", age).tolist()[0] == "<50"
    # a numeric code or a stage is not an age: its values are the groups (before, site 3 fell in "<50")
    site = pd.Series(["1", "2", "3", "3", "2", "1"])
    assert attribute_groups("site", site).tolist() == site.tolist()
    assert attribute_groups("stage", site).tolist() == site.tolist()  # "stage" holds "age", but is not one
    # a continuous measure: quartiles of the file's values, each named by its span
    bmi = pd.Series(np.arange(20.0, 40.0))
    groups = attribute_groups("BMI", bmi)
    assert groups.nunique() == 4 and groups.value_counts().eq(5).all() and groups[0] == "20-24.8"
    assert attribute_groups("Sex", pd.Series([" Female", "male", ""])).tolist() == ["female", "male", "unknown"]


def test_an_auc_that_age_explains_vanishes_within_age_bands():
    from symptomfuse.evaluate.report import _stratified_auc

    rng = np.random.default_rng(0)
    band = np.repeat(["<50", "50-59", "60-69", "70+"], 50)
    y = (rng.random(200) < np.repeat([0.1, 0.3, 0.6, 0.9], 50)).astype(int)  # cases are older
    units = pd.DataFrame({"person_id": [f"p{i}" for i in range(200)], "y": y})
    age_only = np.repeat([0.1, 0.3, 0.6, 0.9], 50) + rng.normal(0, 0.01, 200)  # a score that is age
    r = _stratified_auc(units, np.stack([1 - age_only, age_only], 1), band)
    assert r["roc_auc_same_people"] > 0.75 and abs(r["roc_auc"] - 0.5) < 0.15 and r["people"] == 200
    signal = y + rng.normal(0, 0.5, 200)  # a score that sees the disease itself keeps its AUC
    r = _stratified_auc(units, np.stack([-signal, signal], 1), band)
    assert abs(r["roc_auc"] - r["roc_auc_same_people"]) < 0.08 and r["roc_auc"] > 0.8
    unknown = np.where(np.arange(200) < 20, "unknown", band)  # people of unknown age are left out
    assert _stratified_auc(units, np.stack([-signal, signal], 1), unknown)["people"] == 180


def test_conformal_sets_cover_at_the_nominal_rate():
    from symptomfuse.evaluate.metrics import accuracy_coverage, conformal_sets

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    p1 = np.clip(0.5 + (y - 0.5) * rng.uniform(0, 0.8, 4000) + rng.normal(0, 0.15, 4000), 0.01, 0.99)
    proba = np.stack([1 - p1, p1], 1)
    for alpha in (0.1, 0.2):
        sets = conformal_sets(y[:2000], proba[:2000], proba[2000:], alpha)
        assert abs(sets[np.arange(2000), y[2000:]].mean() - (1 - alpha)) < 0.025
    curve = accuracy_coverage(y, proba)
    assert curve[0]["accuracy"] < curve[-1]["accuracy"]  # withholding the least certain helps


def test_the_expected_conformal_range_holds_the_coverage_of_small_calibration_sets():
    from symptomfuse.evaluate.metrics import conformal_coverage_range, conformal_sets

    rng = np.random.default_rng(1)
    n_cal, n_test, alpha = 98, 247, 0.1
    lo, hi = conformal_coverage_range(n_cal, n_test, alpha)
    assert lo < 1 - alpha < hi and hi - lo > 0.08  # 98 calibration people: several points either side
    wide, narrow = conformal_coverage_range(20, 247, alpha), conformal_coverage_range(2000, 247, alpha)
    assert wide[1] - wide[0] > hi - lo > narrow[1] - narrow[0]
    inside = []
    for _ in range(400):  # fresh calibration and test people each time, all exchangeable
        y = rng.integers(0, 2, n_cal + n_test)
        p1 = np.clip(0.5 + (y - 0.5) * rng.uniform(0, 0.8, len(y)) + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
        proba = np.stack([1 - p1, p1], 1)
        sets = conformal_sets(y[:n_cal], proba[:n_cal], proba[n_cal:], alpha)
        inside.append(lo <= sets[np.arange(n_test), y[n_cal:]].mean() <= hi)
    assert 0.91 <= np.mean(inside) <= 0.99


def test_feature_column_selection():
    from symptomfuse.errors import UsageError
    from symptomfuse.modalities.table import partly_numeric, select_columns

    df = pd.DataFrame({"id": ["a"], "age": [60], "Rating": [2], "Rating1": [1], "f1": [0.1], "smile_x": [1.0],
                       "note": ["x"]})
    assert select_columns(df, "numeric", ["id"])[0] == ["age", "Rating", "Rating1", "f1", "smile_x"]
    assert select_columns(df, "numeric-except:age,Rating*", ["id"])[0] == ["f1", "smile_x"]
    assert select_columns(df, "prefix:smile_", [])[0] == ["smile_x"]
    assert select_columns(df, "cols:f1,age", []) == (["f1", "age"], ["f1", "age"])
    assert select_columns(df, "cols:first=f1,age", []) == (["first", "age"], ["f1", "age"])  # named apart
    for bad, says in (("cols:nope", "no column"), ("prefix:zz", "select no column"), ("cols:note", "not numeric"),
                      ("every", "use numeric")):
        with pytest.raises(UsageError, match=says):
            select_columns(df, bad, [])
    # left out although partly numbers (a column of text alone is not listed)
    df = pd.DataFrame({"id": ["a", "b", "c"], "f1": [0.1, 0.2, 0.3], "bp": ["120", "n.a.", ""], "note": ["x", "y", "z"]})
    assert partly_numeric(df, "numeric", ["id"]) == {"bp": "1 of 2 values is not a number, e.g. 'n.a.'"}
    assert partly_numeric(df, "numeric-except:bp", ["id"]) == {} and partly_numeric(df, "cols:f1", ["id"]) == {}


def test_ordinal_metrics_for_ratings():
    from symptomfuse.contract import rating_values
    from symptomfuse.evaluate.metrics import ordinal_metrics

    assert rating_values(["healthy", "pd"]) is None and rating_values(["0", "1"]) is None
    assert rating_values(["1", "1.0", "2"]) is None and rating_values(["0", "1", "nan"]) is None
    values = rating_values(["0", "1", "2", "3", "4"])
    y = np.array([0, 1, 2, 4])
    proba = np.eye(5)[[0, 2, 2, 1]]  # right, off by one, right, off by three
    m = ordinal_metrics(y, proba, values)
    assert m["mae"] == pytest.approx(1.0) and m["exact"] == 0.5 and m["within_one"] == 0.75
    assert m["confusion"][0][0] == 1 and m["confusion"][1][2] == 1 and m["confusion"][4][1] == 1
    assert np.sum(m["confusion"]) == 4
    soft = np.array([[0.5, 0.5, 0, 0, 0]])  # expected 0.5: rounds to a class, never in between
    assert ordinal_metrics(np.array([0]), soft, values)["mae"] in (0.0, 1.0)


def test_only_a_contract_curated_as_ordinal_has_ratings():
    from symptomfuse.contract import FeatureContract
    from symptomfuse.data.curate import default_contract
    from symptomfuse.errors import UsageError

    plain = default_contract(modalities=["audio"]).with_classes(["0", "1", "2"], None)
    assert plain.class_values() is None and "ordinal" not in plain.to_json()  # older contracts read the same
    rated = default_contract(modalities=["audio"], ordinal=True).with_classes(["0", "1", "2"], None)
    assert rated.class_values().tolist() == [0.0, 1.0, 2.0]
    assert FeatureContract.from_json(rated.to_json()) == rated
    with pytest.raises(UsageError, match="three or more distinct numbers"):
        default_contract(modalities=["audio"], ordinal=True).with_classes(["mild", "moderate", "severe"], None)
    with pytest.raises(UsageError, match="ordinal must be true or false"):
        FeatureContract.from_json({**rated.to_json(), "ordinal": "yes"})


def test_the_choice_is_said_beside_the_best_test_figure_only_when_that_flatters():
    from symptomfuse.evaluate.report import choice_summary

    def metrics(chosen_auc):
        single = {"person": {"roc_auc": 0.80}}
        chosen = {"person": {"roc_auc": chosen_auc}, "choices": [{"chosen": "a_only", "by": "roc_auc"},
                                                                   {"chosen": "b_only", "by": "roc_auc"}]}
        return {"top_level": "person", "models": {"a_only": single, "b_only": {"person": {"roc_auc": 0.75}},
                                                  "chosen_on_val": chosen}}

    worse = choice_summary(metrics(0.78))
    assert "a_only in 1 of 2 folds" in worse and "a_only 0.800, was picked after seeing the test figures" in worse
    better = choice_summary(metrics(0.83))  # folds that chose differently can beat every single model
    assert "flatters" not in better and "no other model does better on test (the best: a_only 0.800)" in better


def test_ordinal_loss_orders_the_mistakes():
    import torch

    from symptomfuse.train.fit import ordinal_loss

    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    y = torch.tensor([0])
    near, far = torch.full((1, 5), -9.0), torch.full((1, 5), -9.0)
    near[0, 1], far[0, 3] = 9.0, 9.0  # confidently one off, and three off: the same cross-entropy
    ce = torch.nn.functional.cross_entropy
    assert float(ce(near, y)) == pytest.approx(float(ce(far, y)))
    assert float(ordinal_loss(far, y, values)) > float(ordinal_loss(near, y, values)) + 1.5
    right = torch.full((1, 5), -9.0)
    right[0, 0] = 9.0
    assert float(ordinal_loss(right, y, values)) == pytest.approx(float(ce(right, y)), abs=1e-6)
    # classes listed in any order (e.g. the positive class last): the values decide the order
    perm = torch.tensor([4, 0, 1, 2, 3])
    assert float(ordinal_loss(far[:, perm], torch.tensor([1]), values[perm])) == pytest.approx(
        float(ordinal_loss(far, y, values)))
    w = torch.tensor([2.0, 1, 1, 1, 1])  # class weights scale a sample's whole loss
    assert float(ordinal_loss(far, y, values, w)) == pytest.approx(2 * float(ordinal_loss(far, y, values)))


def test_ratings_train_with_the_ordinal_loss_and_report_ordinal_metrics(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(60):
        rating = int(rng.integers(0, 4))
        for k in range(2):  # two videos a person, rated alike; the feature grows with the rating
            rows.append({"video": f"P{i:02d}-v{k}", "rating": rating, "amp": rating + rng.normal(0, 0.4),
                         "noise": rng.normal()})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    assert main(["curate", "--table", f"tap={tmp_path / 't.csv'}::cols:amp,noise", "--out", str(tmp_path / "c"),
                 "--person-col", "video", "--person-pattern", r"(P\d+)", "--label-col", "rating",
                 "--labels", "0,1,2,3", "--ordinal", "--label-scope", "recording"]) == 0
    assert json.loads((tmp_path / "c" / "contract.json").read_text())["ordinal"] is True
    assert main(["train", str(tmp_path / "c"), "--out", str(tmp_path / "run"), "--folds", "3", "--epochs", "40",
                 "--patience", "8", "--loss", "ordinal"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train"]["loss"] == "ordinal"
    assert main(["evaluate", str(tmp_path / "run"), "--bootstrap", "50"]) == 0
    rec = json.loads((tmp_path / "run" / "metrics.json").read_text())["models"]["tap_only"]["recording"]
    assert rec["mae"] < 0.5 and rec["within_one"] > 0.9, rec  # chance MAE is about 1.25
    assert np.sum(rec["confusion"]) == 120 and len(rec["confusion"]) == 4
    # named classes have no order: --ordinal is refused at curation, saying why
    df = pd.DataFrame(rows).assign(rating=lambda d: d.rating.map(dict(enumerate("abcd"))))
    df.to_csv(tmp_path / "n.csv", index=False)
    named = ["curate", "--table", f"tap={tmp_path / 'n.csv'}::cols:amp,noise", "--person-col", "video",
             "--person-pattern", r"(P\d+)", "--label-col", "rating", "--labels", "a,b,c,d", "--label-scope", "recording"]
    capsys.readouterr()
    assert main([*named, "--out", str(tmp_path / "n"), "--ordinal"]) == 2
    assert "three or more distinct numbers" in capsys.readouterr().err and not (tmp_path / "n").exists()
    # numbered classes are ratings only when curated with --ordinal: without it, the ordinal loss is refused
    # before training, and evaluation reports no rating error
    assert main(["curate", "--table", f"tap={tmp_path / 't.csv'}::cols:amp,noise", "--out", str(tmp_path / "u"),
                 "--person-col", "video", "--person-pattern", r"(P\d+)", "--label-col", "rating",
                 "--labels", "0,1,2,3", "--label-scope", "recording"]) == 0
    assert "ordinal" not in json.loads((tmp_path / "u" / "contract.json").read_text())
    capsys.readouterr()
    assert main(["train", str(tmp_path / "u"), "--out", str(tmp_path / "r2"), "--loss", "ordinal"]) == 2
    assert "curated without --ordinal" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_leave_one_person_out_from_the_command_line(tmp_path, capsys):
    """``train --folds loo``: a fold per person, each person's videos predicted by models trained on the
    others; the run and the report say which protocol it was."""
    rng = np.random.default_rng(2)
    rows = [{"video": f"P{i:02d}-v{k}", "rating": i % 3, "amp": i % 3 + rng.normal(0, 0.3)}
            for i in range(9) for k in range(2)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    assert main(["curate", "--table", f"tap={tmp_path / 't.csv'}::cols:amp", "--out", str(tmp_path / "c"),
                 "--person-col", "video", "--person-pattern", r"(P\d+)", "--label-col", "rating",
                 "--labels", "0,1,2", "--label-scope", "recording"]) == 0
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c"), "--out", str(run), "--folds", "loo", "--epochs", "3",
                 "--baselines", "lr", "--workers", "1"]) == 0
    assert main(["evaluate", str(run), "--bootstrap", "20"]) == 0
    protocol = json.loads((run / "metrics.json").read_text())["protocol"]
    assert protocol["leave_one_out"] and protocol["folds"] == protocol["people"] == 9
    samples = pd.read_csv(run / "samples.csv", keep_default_na=False)
    assert samples.groupby("fold").person_id.nunique().eq(1).all() and samples.fold.nunique() == 9
    for name in ("tap_only", "lr_tap"):  # every video predicted, out of its person's fold
        assert pd.read_csv(run / "predictions" / f"{name}.csv")[["p_0", "p_1", "p_2"]].notna().all().all()
    assert "Leave one person out (9 folds)" in (run / "report.html").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "c"), "--out", str(tmp_path / "r2"), "--folds", "leave"])
    assert "or loo: one per person" in capsys.readouterr().err


def test_manifests_and_tables_are_read_as_spreadsheets_save_them(tmp_path):
    """Excel's "CSV UTF-8" (a byte order mark), "Unicode text" (UTF-16), a sheet set to a language whose
    decimal mark is a comma ("CSV" with semicolons, 0,53), tabs: all read as the plain CSV does. Latin-1
    cannot be told from other encodings reliably: refused, with how to convert it."""
    from symptomfuse.data.manifest import Columns, read_manifest, read_sheet, read_table

    manifest = pd.DataFrame({"path": ["a.mp4", "b.mp4"], "person_id": ["Zoë", "NA"], "label": ["healthy", "pd"],
                             "note": ["x, y", ""]})
    table = pd.DataFrame({"person_id": ["p1", "p2", "p3"], "label": ["healthy", "pd", "pd"],
                          "jitter": [0.00784, 1.5, -2.25], "hnr": [21.0, 19.5, 1e-05]})
    saved = {"plain": {}, "bom": {"encoding": "utf-8-sig"}, "utf16": {"encoding": "utf-16"}, "tabs": {"sep": "\t"}}
    for name, how in saved.items():
        manifest.to_csv(tmp_path / f"m_{name}.csv", index=False, **how)
        table.to_csv(tmp_path / f"t_{name}.csv", index=False, **how)
    manifest.to_csv(tmp_path / "m_semicolons.csv", index=False, sep=";")
    table.to_csv(tmp_path / "t_semicolons.csv", index=False, sep=";", decimal=",")
    for name in [*saved, "semicolons"]:
        got = read_manifest(tmp_path / f"m_{name}.csv")
        assert got[["path", "person_id", "label", "note"]].values.tolist() == manifest.fillna("").values.tolist(), name
        text, values = read_table(tmp_path / f"t_{name}.csv", Columns())
        assert values[["jitter", "hnr"]].values.tolist() == table[["jitter", "hnr"]].values.tolist(), name
        assert text.person_id.tolist() == ["p1", "p2", "p3"], name
        assert read_sheet(tmp_path / f"t_{name}.csv", "split file").jitter.tolist()[0] in ("0.00784", "0,00784")
    manifest.to_csv(tmp_path / "m_latin1.csv", index=False, encoding="latin-1")
    with pytest.raises(UsageError, match=r"not UTF-8 text \(byte 0xeb at position \d+\): save it as \"CSV UTF-8\""):
        read_manifest(tmp_path / "m_latin1.csv")


def test_a_table_that_a_csv_reader_would_shift_or_rename_is_refused_and_huge_values_are_missing(tmp_path, capsys):
    """A line with more fields than the header (which a CSV reader takes for an index, shifting every
    column) and a header that repeats a name (which a reader renames) are refused with the line; a value
    beyond 32-bit floats, which features are kept in, counts as missing, as inf does, and curate says so;
    a person id the --person-pattern does not match is quarantined saying that."""
    rows = [f"S{i:02d}_{k},{'case' if i % 2 else 'control'},{i % 2 + 0.1 * k},{k}" for i in range(12) for k in range(2)]
    args = ["--person-col", "subject", "--person-pattern", r"(S\d+)", "--label-col", "diagnosis", "--positive", "case"]

    def curate(name, text):
        (tmp_path / f"{name}.csv").write_text(text)
        code = main(["curate", "--table", f"t={tmp_path / name}.csv", "--out", str(tmp_path / name), *args])
        return code, capsys.readouterr()

    code, out = curate("ragged", "subject,diagnosis,a,b\n" + "\n".join(rows[:3] + ["S99_0,case,1,5,2"] + rows[3:]))
    assert code == 2 and "ragged.csv, line 5: 5 fields where the header has 4" in out.err and "Traceback" not in out.err
    code, out = curate("repeated", "subject,diagnosis,a,a\n" + "\n".join(rows))
    assert code == 2 and "the header repeats the column name(s) ['a']" in out.err
    huge = [r.replace(",0.1,", ",1e308,") for r in rows]
    code, out = curate("huge", "subject,diagnosis,a,b\n" + "\n".join(huge + ["XX_0,case,1,1"]))
    assert code == 0 and "values infinite or beyond 32-bit floats (|x| > 3.4e38), kept as missing: a 6" in out.out
    summary = json.loads((tmp_path / "huge" / "summary.json").read_text())
    assert summary["values_beyond_float32"] == {"t": {"a": 6}}
    quarantine = pd.read_csv(tmp_path / "huge" / "quarantine.csv")
    assert quarantine.detail.tolist() == ["table t: empty subject (the person pattern does not match 'XX_0')"]
    assert main(["train", str(tmp_path / "huge"), "--out", str(tmp_path / "run"), "--folds", "2", "--epochs", "2",
                 "--baselines", "lr"]) == 0


def test_a_split_file_is_read_forgivingly_and_its_people_not_curated_are_named(tmp_path):
    """Spaces around ids and split names, and capitals in the split, are read as meant; people the file
    names who were not curated (a typo would quietly move a test person into training) are listed."""
    from symptomfuse.train.splits import fixed_split, not_curated, read_split_file

    (tmp_path / "s.csv").write_text("person_id,split\n S01 ,Test\nS02, dev\nS03,test\nS9x,test\n")
    assignment = read_split_file(tmp_path / "s.csv")
    assert assignment == {"S01": "test", "S02": "dev", "S03": "test", "S9x": "test"}
    people = np.array(["S01", "S02", "S03", "S04"])
    fold = fixed_split(people, assignment)
    assert people[fold.test].tolist() == ["S01", "S03"] and people[fold.train].tolist() == ["S04"]
    assert not_curated(people, assignment) == {"test": ["S9x"]}
