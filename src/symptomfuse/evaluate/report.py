"""Evaluate a run folder: metrics.json, an ablation table, and report.html with its plots."""

from __future__ import annotations

import html
import json
import re
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from symptomfuse import NOTICE  # noqa: E402
from symptomfuse.atomic import atomic_path, atomic_write_text  # noqa: E402
from symptomfuse.artifacts import RunInfo  # noqa: E402
from symptomfuse.errors import UsageError  # noqa: E402
from symptomfuse.evaluate.metrics import (abstention, accuracy_coverage, aggregate, auc_binary, compute,  # noqa: E402
                                          conformal_coverage_range, conformal_sets, ordinal_metrics,
                                          ordinal_prediction, with_intervals)
from symptomfuse.data.manifest import read_sheet  # noqa: E402
from symptomfuse.evaluate.predictions import load_predictions, read_probabilities, score_levels  # noqa: E402
from tqdm import tqdm  # noqa: E402


METRICS_SCHEMA = "symptomfuse-metrics/2"


def _score(units_df: pd.DataFrame, p: np.ndarray, levels: tuple, n_boot: int, band: float, seed: int,
           ordinal: np.ndarray | None = None) -> dict:
    """Metrics at each level for the samples with a prediction; with ``ordinal`` class values (ratings),
    the ordinal metrics too, and the mean absolute error per person."""
    ok = np.isfinite(p).all(axis=1)
    entry = {}
    for level in levels:
        units, pl = aggregate(units_df[ok].reset_index(drop=True), p[ok], level)
        entry[level] = with_intervals(units, pl, n_boot=n_boot, seed=seed)
        entry[level]["people"] = int(units["person_id"].nunique())
        if ordinal is not None:
            entry[level].update(ordinal_metrics(units["y"].to_numpy(), pl, ordinal))
            errors = np.abs(ordinal_prediction(pl, ordinal) - ordinal[units["y"].to_numpy()])
            entry[level]["mae_per_person"] = float(pd.Series(errors).groupby(units["person_id"].to_numpy()).mean().mean())
        if level == levels[-1]:
            entry["abstention"] = abstention(units, pl, band)
    return entry


def _rank01(x: np.ndarray) -> np.ndarray:
    """Values mapped to [0, 1] by rank (an attribute used as a score)."""
    from scipy.stats import rankdata

    return (rankdata(x) - 1) / max(len(x) - 1, 1)


def read_subgroups(path: Path, person_col: str, columns: list[str]) -> tuple[pd.DataFrame, str, list[str]]:
    """The person attributes of ``evaluate --subgroups`` (a CSV), checked before any work: the table, and
    its person and attribute columns as the file spells them (names match in any case)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--subgroups: no such file {path}")
    table = read_sheet(path, "--subgroups")
    table.columns = [str(c).strip() for c in table.columns]
    lower = {c.lower(): c for c in table.columns}
    person = lower.get(person_col.lower(), person_col)
    if person not in table.columns:
        raise UsageError(f"--subgroups: no person column {person_col!r}; the file has {list(table.columns)}")
    cols = [lower.get(c.lower(), c) for c in columns]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise UsageError(f"--subgroups: no column(s) {missing}; the file has {list(table.columns)} "
                         f"(choose them with --subgroup-cols)")
    return table, person, cols


AGE_BANDS = ([-np.inf, 50, 60, 70, np.inf], ["<50", "50-59", "60-69", "70+"])
FEW_VALUES = 12  # a numeric attribute with at most this many distinct values is a code or score: grouped as is


def _numbers(values: pd.Series) -> pd.Series | None:
    """A column as numbers when more than 90% of it reads as one (a few blanks or typos allowed), else None."""
    v = pd.to_numeric(values, errors="coerce")
    return v if v.notna().mean() > 0.9 else None


def attribute_groups(column: str, values: pd.Series) -> pd.Series:
    """One group label per value of a person attribute: an age (a column named age, Age, age_at_visit, ...)
    in the bands <50, 50-59, 60-69, 70+; other numbers with at most ``FEW_VALUES`` distinct values (a site
    code, a stage) as they are written; other numbers in quartile bands of the file's values ("18.2-22.5");
    text as it is, trimmed and in lower case. A missing value is "unknown"."""
    text = values.astype(str).str.strip()
    v = _numbers(values)
    if v is None:
        return text.str.lower().replace("", "unknown")
    if re.search(r"(^|[^a-z])age([^a-z]|$)", column.lower()):
        edges, labels = AGE_BANDS
    elif v.nunique() <= FEW_VALUES:
        return text.where(v.notna(), "unknown")
    else:
        edges = np.unique(np.quantile(v.dropna(), [0, 0.25, 0.5, 0.75, 1]))
        labels = [f"{lo:.3g}-{hi:.3g}" for lo, hi in zip(edges[:-1], edges[1:])]
        edges = [-np.inf, *edges[1:-1], np.inf]
    return pd.cut(v, edges, right=False, labels=labels).astype(object).fillna("unknown")


def subgroup_table(people: pd.DataFrame, person_col: str, columns: list[str]) -> pd.DataFrame:
    """person_id -> one group label per column (columns checked by ``read_subgroups``; labels by
    ``attribute_groups``)."""
    out = pd.DataFrame({"person_id": people[person_col].astype(str).str.strip()})
    for c in columns:
        out[c] = attribute_groups(c, people[c])
    return out.drop_duplicates("person_id")


def _check_subgroup_people(people: np.ndarray, table: pd.DataFrame, person_col: str) -> None:
    """Before any work: the run's tested people found in ``evaluate --subgroups``. None is refused (every cell
    would be "unknown": ids spelt otherwise, or the wrong person column); some missing are said."""
    listed = set(table[person_col].astype(str).str.strip())
    absent = sorted(set(people) - listed)
    if len(absent) == len(people):
        raise UsageError(f"--subgroups: none of the run's {len(people)} tested people is in the file (its ids look "
                         f"like {', '.join(sorted(listed)[:3])}; the run's like {', '.join(sorted(people)[:3])}): "
                         "check --subgroup-person-col and how the ids are spelt")
    if absent:
        print(f"--subgroups: {len(absent)} of the run's {len(people)} tested people are not in the file (e.g. "
              f"{', '.join(absent[:3])}); their cells say 'unknown'", file=sys.stderr)


def _subgroups(metrics: dict, units_of, groups: pd.DataFrame, columns: list[str], n_boot: int, seed: int) -> None:
    """Per model: metrics in every cell of every subgroup column, with intervals and people counts."""
    top = metrics["top_level"]
    for name, entry in metrics["models"].items():
        units, p = units_of(name)
        cells = units.merge(groups, on="person_id", how="left").fillna("unknown")
        rows = []
        for c in columns:
            for value, idx in cells.groupby(c).indices.items():
                u = units.iloc[idx].reset_index(drop=True)
                row = {"attribute": c, "group": value, "people": int(u.person_id.nunique())}
                if len(np.unique(u.y)) == 2:
                    m = with_intervals(u, p[idx], n_boot=n_boot, seed=seed)
                    row.update(roc_auc=m["roc_auc"], roc_auc_ci=m["roc_auc_ci"], accuracy=m["accuracy"],
                               sensitivity=m["sensitivity"], specificity=m["specificity"])
                rows.append(row)
        entry["subgroups"] = rows
        entry["stratified_auc"] = {c: _stratified_auc(units, p, cells[c].to_numpy()) for c in columns}
    metrics["subgroup_level"] = top


def _stratified_auc(units: pd.DataFrame, p: np.ndarray, group: np.ndarray) -> dict:
    """The AUC counting only case-control pairs within the same group (e.g. the same age band), beside the
    plain AUC on the same people (group known): what is left of a model's result once the attribute that
    defines the groups cannot help it. Equal figures: the attribute explains none of it."""
    if p.shape[1] != 2:
        return {}
    y = units["y"].to_numpy()
    known = group != "unknown"
    score = p[:, -1]
    num = pairs = 0.0
    for g in np.unique(group[known]):
        i = group == g
        n_pos, n_neg = int((y[i] == 1).sum()), int((y[i] == 0).sum())
        if n_pos and n_neg:
            num += auc_binary(y[i], score[i]) * n_pos * n_neg
            pairs += n_pos * n_neg
    plain = auc_binary(y[known], score[known]) if len(np.unique(y[known])) == 2 else float("nan")
    return {"roc_auc": num / pairs if pairs else float("nan"), "roc_auc_same_people": plain,
            "people": int(units.person_id[known].nunique())}


def _contributions(run: Path, info: RunInfo, w: pd.DataFrame, preds: dict, tested: np.ndarray, top: str,
                   metrics: dict) -> None:
    """Each fused model's per-prediction modality contributions: how much the probability of the positive
    (last) class moves when that modality is removed (p with everything - p without it), per top-level
    unit (NaN where the unit lacks the modality, or has nothing else), written to contributions/MODEL.csv; metrics.json gets the mean absolute contribution per
    modality and the share of predictions each modality moves most."""
    out = run / "contributions"
    for name, entry in metrics["models"].items():
        dropped = [d for (n, d) in preds if n == name and len(d) == 1]
        if not dropped:
            continue
        full = preds[(name, ())][tested]
        units, pf = aggregate(w, np.nan_to_num(full, nan=0.5), top)
        table = units[["person_id"]].copy()
        if top != "person":
            table.insert(0, "unit", units.iloc[:, 0].to_numpy())
        table["p"] = pf[:, -1]
        for (m,) in dropped:
            without = preds[(name, (m,))][tested]
            both = np.isfinite(full).all(axis=1) & np.isfinite(without).all(axis=1)
            _, pw = aggregate(w, np.where(both[:, None], without, np.nan_to_num(full, nan=0.5)), top)
            delta = pf[:, -1] - pw[:, -1]
            has = both & (w[f"has_{m}"].to_numpy().astype(bool) if f"has_{m}" in w else True)
            kept = aggregate(w, has[:, None].astype(float), top)[1][:, 0] > 0  # absent, or nothing left: NaN
            table[f"contribution_{m}"] = np.where(kept, delta, np.nan)
        out.mkdir(exist_ok=True)
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
        cols = [c for c in table.columns if c.startswith("contribution_")]
        mags = table[cols].abs()
        most = mags.dropna().idxmax(axis=1).value_counts(normalize=True)
        entry["contributions"] = {c[len("contribution_"):]: {"mean_abs": float(mags[c].mean()),
                                                             "share_largest": float(most.get(c, 0.0))}
                                  for c in cols}


def feature_importance(run: Path, info: RunInfo, samples: pd.DataFrame, repeats: int = 5, seed: int = 0,
                       top_n: int = 10) -> dict:
    """Permutation importance of each feature-table modality's own network, on held-out people: for every
    fold, the window ROC AUC on that fold's test windows minus the AUC with one column shuffled among them
    (``repeats`` times), averaged over folds. Features are named as in the table. Needs the curated set the
    run trained on (its path is in run.json)."""
    import torch

    from symptomfuse.evaluate.calibration import calibrated
    from symptomfuse.models.multimodal import load as load_model

    tables = [m for m in info.contract.modalities if info.contract.modality(m).feature_names()]
    singles = {s.modalities[0]: n for n, e in info.models.items() if (s := e["spec"]).kind == "single"
               and s.modalities[0] in tables}
    if not singles or len(info.classes) != 2:
        return {}
    ws, fold = _test_inputs(run, info, samples, list(singles))
    rng = np.random.default_rng(seed)
    out = {}
    for m, name in singles.items():
        cols = list(info.contract.modality(m).feature_names())
        drops = np.zeros(len(cols))
        used = 0
        for record in info.models[name]["folds"]:
            idx = np.flatnonzero((fold == record["fold"]) & ws.has(m))
            y = ws.y[idx]
            if len(np.unique(y)) < 2:
                continue
            model = load_model(run / "models" / name / f"fold{record['fold']}")
            x = ws.take(m, idx)

            def auc(values):
                with torch.no_grad():
                    logits = model({m: torch.from_numpy(values)}).numpy()
                return auc_binary(y, calibrated(logits, record["temperature"])[:, 1])

            base = auc(x)
            for j in range(len(cols)):
                shuffled = []
                for _ in range(repeats):
                    xp = x.copy()
                    xp[:, j] = xp[rng.permutation(len(xp)), j]
                    shuffled.append(auc(xp))
                drops[j] += base - np.mean(shuffled)
            used += 1
        if used:
            drops /= used
            order = np.argsort(-drops)[:top_n]
            out[m] = {"model": name, "folds": used, "top": [{"feature": cols[j], "auc_drop": float(drops[j])}
                                                            for j in order]}
    return out


def _test_inputs(run: Path, info: RunInfo, samples: pd.DataFrame, modalities: list[str]):
    """The curated windows of ``modalities`` (from the set the run trained on) and each window's test fold
    (-1: not a test window), from the people's folds."""
    from symptomfuse.data.dataset import load_curated

    curated = Path(info.protocol.get("curated", ""))
    if not (curated / "contract.json").exists():
        raise UsageError(f"this needs the curated set the run trained on; not found at {curated}")
    ws = load_curated(curated, modalities)
    fold_of_person = dict(zip(samples.person_id, samples.fold))
    return ws, ws.windows.person_id.map(fold_of_person).fillna(-1).to_numpy(int)


def mc_dropout(run: Path, info: RunInfo, samples: pd.DataFrame, passes: int = 20, seed: int = 0) -> dict:
    """MC-dropout uncertainty per prediction of every network (single-modality and fused) on its held-out
    people: ``passes`` forward passes with dropout on everywhere in the network (batch norm as trained),
    each pass giving calibrated p(positive) per person (pooled as the run pools: windows averaged, or a
    fused model's pooled embeddings); the spread is the standard deviation over passes. Then the accuracy
    of the person-level predictions (mean over passes) when the most uncertain are withheld (as UFNet
    withholds the least certain)."""
    import torch

    from symptomfuse.evaluate.calibration import calibrated
    from symptomfuse.models.multimodal import load as load_model
    from symptomfuse.train.crossval import Samples, pooled_embeddings, unit_logits, ws_has_any
    from symptomfuse.train.fit import PreparedStore, TrainConfig, predict_logits

    nets = {n: e["spec"] for n, e in info.models.items() if e["spec"].kind in ("single", "fused")}
    if not nets or len(info.classes) != 2:
        return {}
    ws, fold = _test_inputs(run, info, samples, sorted({m for s in nets.values() for m in s.modalities}))
    # the windows prepared once for every pass, fold and model (preparing has no dropout, no randomness)
    store = PreparedStore(ws, info.train.get("prepared_mb", TrainConfig.prepared_mb))
    units = Samples.make(ws, info.unit)
    person_of_unit = units.table.person_id.to_numpy()
    out = {}
    for name, spec in nets.items():
        rows = []
        for record in info.models[name]["folds"]:
            idx = np.flatnonzero(fold == record["fold"])
            idx = idx[ws_has_any(ws, spec.modalities, idx)]
            if not len(idx):
                continue
            model = load_model(run / "models" / name / f"fold{record['fold']}")
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.train()
            torch.manual_seed(seed + record["fold"])
            u = units.of(idx)
            draws = []
            for _ in range(passes):
                if spec.fusion is not None and info.unit != "recording":
                    logits = unit_logits(model, *pooled_embeddings(model, ws, units, idx, u, store))
                    draws.append(calibrated(logits, record["temperature"])[:, 1])
                else:
                    p = calibrated(predict_logits(model, ws, idx, store=store), record["temperature"])
                    draws.append(units.pool(p, idx)[u][:, 1])
            draws = np.stack(draws)
            rows.append(pd.DataFrame({"person_id": person_of_unit[u], "y": units.table.y.to_numpy()[u],
                                      "p": draws.mean(axis=0), "spread": draws.std(axis=0)}))
        if not rows:
            continue
        per = pd.concat(rows).groupby("person_id").agg(y=("y", "first"), p=("p", "mean"), spread=("spread", "mean"))
        order = np.argsort(per.spread.to_numpy(), kind="stable")  # most certain first
        correct = ((per.p.to_numpy() >= 0.5).astype(int) == per.y.to_numpy())[order]
        curve = [{"coverage": c, "accuracy": float(correct[:max(1, int(round(c * len(correct))))].mean())}
                 for c in (1.0, 0.98, 0.9, 0.8, 0.7)]
        out[name] = {"passes": passes, "people": int(len(per)), "mean_spread": float(per.spread.mean()),
                     "accuracy_coverage": curve}
    return out


def evaluate_run(run: Path, n_boot: int = 500, band: float = 0.1, seed: int = 0,
                 subgroups: tuple | None = None, importance: bool = False, mc_passes: int = 0) -> dict:
    """Compute metrics for every prediction set in ``run`` and write metrics.json and the report.

    Each model is scored on every tested sample it gives a prediction for (its ``coverage``), and, when
    some samples lack a modality, separately on the samples that have every modality (``complete``)."""
    run = Path(run)
    info, samples, preds = load_predictions(run)
    tested = samples["fold"].to_numpy() >= 0
    w = samples[tested].reset_index(drop=True)
    levels = score_levels(info, w)
    top = levels[-1]
    ordinal = info.contract.class_values()
    has_cols = [c for c in w.columns if c.startswith("has_")]
    complete = w[has_cols].astype(bool).all(axis=1).to_numpy() if has_cols else np.ones(len(w), bool)
    if subgroups is not None:
        _check_subgroup_people(w.person_id.astype(str).unique(), *subgroups[:2])
    metrics = {"schema": METRICS_SCHEMA, "run_id": info.run_id, "models": {}, "ablations": [],
               "protocol": info.protocol, "classes": info.classes, "positive": info.contract.positive,
               "unit": info.unit, "abstention_band": band, "top_level": top,
               "coverage": {c[len("has_"):]: float(w[c].astype(bool).mean()) for c in has_cols},
               "complete_samples": int(complete.sum()), "samples": int(len(w))}
    with warnings.catch_warnings():  # a model that predicted no one: NaN figures, without NumPy's warnings
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        for (name, dropped), p in tqdm(preds.items(), desc="evaluate", unit="model", leave=False):
            spec = info.spec(name)
            p = p[tested]
            entry = {"model": name, "kind": spec.kind, "modalities": [m for m in spec.modalities if m not in dropped],
                     "fusion": spec.late or (spec.fusion or {}).get("name") or spec.baseline,
                     "coverage": float(np.isfinite(p).all(axis=1).mean())}
            if dropped:
                entry["dropped"] = list(dropped)
                pc = np.where(complete[:, None], p, np.nan)
                entry.update(_score(w, pc, levels, n_boot, band, seed, ordinal))
                metrics["ablations"].append(entry)
                continue
            entry.update(_score(w, p, levels, n_boot, band, seed, ordinal))
            if spec.kind == "chosen":  # which model each fold chose, and by what figure on its validation people
                entry["choices"] = [{k: r.get(k) for k in ("fold", "chosen", "by", "validation_samples")}
                                    for r in info.models[name]["folds"]]
            ok = np.isfinite(p).all(axis=1)
            units, pl = aggregate(w[ok].reset_index(drop=True), p[ok], top)
            entry["accuracy_coverage"] = accuracy_coverage(units["y"].to_numpy(), pl)
            if not complete.all():
                entry["complete"] = _score(w, np.where(complete[:, None], p, np.nan), levels[-1:], n_boot, band, seed)
            metrics["models"][name] = entry

    def part_units(part: str, name: str):
        """A fixed split's dev or calib probabilities of model ``name`` at the top level, or None."""
        path = run / "predictions" / part / f"{name}.csv"
        if not path.exists():
            return None
        index, p = read_probabilities(path, samples, info.classes)
        units = samples.iloc[index].reset_index(drop=True)
        ok = np.isfinite(p).all(axis=1)
        if not ok.any() or len(np.unique(units.y[ok])) < 2:
            return None
        return aggregate(units[ok].reset_index(drop=True), p[ok], top)

    _contributions(run, info, w, preds, tested, top, metrics)
    if (run / "predictions" / "dev").is_dir():  # a fixed split: the dev figures choices are made on
        metrics["dev"] = {}
        for name in info.models:
            if (got := part_units("dev", name)) is not None:
                metrics["dev"][name] = {**compute(got[0]["y"].to_numpy(), got[1]), "n": int(len(got[0]))}
    if (run / "predictions" / "calib").is_dir():  # conformal sets calibrated on calib people, tested on test
        for name, entry in metrics["models"].items():
            got = part_units("calib", name)
            tp = preds[(name, ())][tested]
            tok = np.isfinite(tp).all(axis=1)
            if got is None or len(got[0]) < 10 or not tok.any():
                continue
            cu, cpl = got
            tu, tpl = aggregate(w[tok].reset_index(drop=True), tp[tok], top)
            ty = tu["y"].to_numpy()
            dev = part_units("dev", name)  # the same sets on dev people: a check that does not touch test

            def covered(proba: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
                sets = conformal_sets(cu["y"].to_numpy(), cpl, proba, alpha)
                return sets, float(sets[np.arange(len(y)), y].mean())

            entry["conformal"] = []
            for alpha in (0.1, 0.05):
                sets, coverage = covered(tpl, ty, alpha)
                entry["conformal"].append({"nominal": 1 - alpha, "coverage": coverage,
                                           "mean_set_size": float(sets.sum(axis=1).mean()),
                                           "calib_people": int(len(cu)), "test_people": int(len(tu)),
                                           "expected_range": conformal_coverage_range(len(cu), len(tu), alpha)})
                if dev is not None:
                    entry["conformal"][-1]["dev_coverage"] = covered(dev[1], dev[0]["y"].to_numpy(), alpha)[1]
    if importance:
        metrics["feature_importance"] = feature_importance(run, info, samples, seed=seed)
    if mc_passes:
        metrics["mc_dropout"] = mc_dropout(run, info, samples, mc_passes, seed)
    if subgroups is not None:  # (table of person attributes, its person column, the attribute columns)
        table, person_col, columns = subgroups
        groups = subgroup_table(table, person_col, columns)

        def units_of(name):
            p = preds[(name, ())][tested]
            ok = np.isfinite(p).all(axis=1)
            return aggregate(w[ok].reset_index(drop=True), p[ok], top)
        _subgroups(metrics, units_of, groups, columns, min(n_boot, 200), seed)
        # how much could a numeric attribute (age) alone explain: its own AUC on the same people
        metrics["attribute_auc"] = {}
        for c in columns:
            v = _numbers(table[c])
            if v is not None:
                units = aggregate(w, np.full((len(w), len(info.classes)), 0.5), top)[0]
                lookup = dict(zip(table[person_col].astype(str).str.strip(), v))
                x = units.person_id.map(lookup).to_numpy(float)
                ok = np.isfinite(x)
                if ok.sum() and len(np.unique(units.y[ok])) == 2:
                    metrics["attribute_auc"][c] = {"roc_auc": compute(units.y.to_numpy()[ok], np.stack(
                        [1 - _rank01(x[ok]), _rank01(x[ok])], 1))["roc_auc"], "people": int(ok.sum())}
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1, default=float))
    write_report(run, info, w, {k[0]: v[tested] for k, v in preds.items() if not k[1]}, metrics)
    return metrics


def ablation_table(metrics: dict) -> pd.DataFrame:
    rows = []
    top = metrics.get("top_level", "person")
    entries = list(metrics["models"].values()) + metrics["ablations"]
    for e in entries:
        p = e[top]
        name = e["model"] + "".join(f" without {m}" for m in e.get("dropped", []))
        row = {"model": name, "modalities": "+".join(e["modalities"]), "fusion": e["fusion"] or "-",
               f"{top} AUC": p["roc_auc"], "95% CI": f"{p['roc_auc_ci'][0]:.3f}-{p['roc_auc_ci'][1]:.3f}",
               f"{top} bal. acc": p["balanced_accuracy"], "accuracy": p["accuracy"],
               "sens": p["sensitivity"], "spec": p["specificity"], "Brier": p["brier"], "ECE": p["ece"],
               "people": p["people"]}
        if "recording" in e and top == "person":
            row["recording AUC"] = e["recording"]["roc_auc"]
        if "window" in e:
            row["window AUC"] = e["window"]["roc_auc"]
        if metrics.get("complete_samples", 0) < metrics.get("samples", 0):
            row["coverage"] = e["coverage"]
            if "complete" in e:
                row["AUC, complete"] = e["complete"][top]["roc_auc"]
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")
    plt.close(fig)
    return path.name


def _roc(y, s):
    order = np.argsort(-s)
    y = y[order]
    tpr = np.concatenate([[0], np.cumsum(y) / max(y.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(1 - y) / max((1 - y).sum(), 1)])
    return fpr, tpr


def _html_table(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


def _ci(value: float, ci) -> str:
    return f"{value:.3f} [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else f"{value:.3f}"


_BY = {"roc_auc": "ROC AUC", "mae": "mean absolute error", "log_loss": "log loss", "none": "nothing (no validation "
       "sample)"}


def choice_summary(metrics: dict) -> str | None:
    """In words: what the model chosen on validation people (``train.crossval.CHOSEN``) chose in each fold,
    and its figure beside the best test figure of any model; None when the run has no such model."""
    top = metrics["top_level"]
    for name, e in metrics["models"].items():
        if not e.get("choices"):
            continue
        chosen = pd.Series([c["chosen"] for c in e["choices"]]).value_counts()
        by = sorted({_BY.get(c["by"], str(c["by"])) for c in e["choices"]})
        folds = len(e["choices"])
        # ratings: the mean absolute error per recording (lower is better); else the top level's ROC AUC
        level, key, sign, label = (("recording", "mae", -1, "recording MAE") if "mae" in e.get("recording", {})
                                   else (top, "roc_auc", 1, f"{top} AUC"))
        others = {n: sign * o[level][key] for n, o in metrics["models"].items() if n != name and not o.get("choices")}
        best = max(others, key=lambda n: others[n] if np.isfinite(others[n]) else -np.inf) if others else None
        text = (f"{name}: in each fold, the model with the best {' / '.join(by)} on that fold's validation people "
                f"(test people play no part): " + ", ".join(f"{n} in {k} of {folds} fold{'s' * (folds > 1)}"
                                                          for n, k in chosen.items())
                + f". Its {label}, {e[level][key]:.3f}, is what choosing a model this way gives")
        if best is not None and np.isfinite(others[best]):
            if sign * e[level][key] >= others[best]:  # folds that chose different models can beat each of them
                text += f"; no other model does better on test (the best: {best} {sign * others[best]:.3f})"
            else:
                text += (f"; the best {label} of any model, {best} {sign * others[best]:.3f}, was picked after seeing "
                         "the test figures and flatters")
        return text + "."
    return None


def _detail_sections(metrics: dict) -> list[str]:
    """The report's tables beyond the ablation, where metrics.json has them: ordinal metrics, conformal
    sets, MC dropout, modality contributions, feature importance, subgroups."""
    models, top, body = metrics["models"], metrics["top_level"], []
    ordinal = [{"model": n, "level": lvl, **{k: e[lvl][k] for k in ("mae", "exact", "within_one", "mae_per_person")}}
               for n, e in models.items() for lvl in ("recording", top) if "mae" in e.get(lvl, {})]
    if ordinal:
        body += ["<h2>Ratings (ordered classes)</h2><p>The predicted rating is the expected rating rounded to the "
                 "nearest class; MAE per person averages a person's errors first. Confusion matrices of predicted "
                 "ratings are in metrics.json (<code>confusion</code>).</p>", _html_table(ordinal)]
    conformal = [{"model": n, "nominal": c["nominal"], "coverage on test": c["coverage"],
                  "expected 95% range": "{:.3f}-{:.3f}".format(*c["expected_range"]),
                  "coverage on dev": c.get("dev_coverage", ""), "mean set size": c["mean_set_size"],
                  "calib people": c["calib_people"], "test people": c["test_people"]}
                 for n, e in models.items() for c in e.get("conformal") or []]
    if conformal:
        body += ["<h2>Conformal prediction sets</h2><p>Split-conformal sets calibrated on the calib people; "
                 "coverage is the share of test people whose set holds their true class. The expected range is "
                 "where that share falls 95% of the time for exchangeable people, from the numbers of calib and "
                 "test people alone: a perfect method lands anywhere in it. The same sets on the dev people "
                 "show whether an over- or under-coverage comes from the calibration set itself.</p>",
                 _html_table(conformal)]
    if metrics.get("mc_dropout"):
        body += ["<h2>MC dropout</h2><p>Spread (standard deviation over passes with dropout on) of p per person, "
                 "and accuracy when the people with the largest spread are withheld.</p>", _html_table(
                     [{"model": n, "passes": d["passes"], "people": d["people"], "mean spread": d["mean_spread"],
                       **{f"accuracy at {c['coverage']:.0%}": c["accuracy"] for c in d["accuracy_coverage"]}}
                      for n, d in metrics["mc_dropout"].items()])]
    contrib = [{"model": n, "modality": m, "mean |change in p| when removed": c["mean_abs"],
                "share of predictions it moves most": c["share_largest"]}
               for n, e in models.items() for m, c in (e.get("contributions") or {}).items()]
    if contrib:
        body += ["<h2>Why: modality contributions</h2><p>Per prediction in <code>contributions/MODEL.csv</code>: "
                 "how much p of the positive class moves when each modality is removed.</p>", _html_table(contrib)]
    for m, imp in (metrics.get("feature_importance") or {}).items():
        body += [f"<h2>Why: features of {html.escape(m)} that matter</h2><p>Permutation importance of "
                 f"{html.escape(imp['model'])} on held-out people (AUC drop when a column is shuffled).</p>",
                 _html_table(imp["top"])]
    cells = [{"model": n, "attribute": c["attribute"], "group": c["group"], "people": c["people"],
              "AUC [95% CI]": _ci(c["roc_auc"], c.get("roc_auc_ci")) if "roc_auc" in c else "-",
              "sensitivity": c.get("sensitivity"), "specificity": c.get("specificity")}
             for n, e in models.items() for c in e.get("subgroups") or []]
    if cells:
        strat = [{"model": n, "attribute": a, "AUC within groups": v["roc_auc"],
                  "AUC, same people": v["roc_auc_same_people"], "people": v["people"]}
                 for n, e in models.items() for a, v in (e.get("stratified_auc") or {}).items() if v]
        body += ["<h2>For whom it fails</h2><p>Per group, with 95% bootstrap intervals and the number of people. "
                 "An attribute used alone as a score: " + html.escape(json.dumps(metrics.get("attribute_auc"))) +
                 ". 'AUC within groups' compares only people of the same group (e.g. age band): what is left once "
                 "the attribute cannot help.</p>", _html_table(cells), _html_table(strat)]
    return body


def write_report(run: Path, info: dict, windows: pd.DataFrame, preds: dict[str, np.ndarray], metrics: dict) -> None:
    out = run / "report"
    out.mkdir(exist_ok=True)
    classes = info.classes
    names = list(metrics["models"])
    pos = len(classes) - 1
    top = metrics["top_level"]
    def covered(n):
        ok = np.isfinite(preds[n]).all(axis=1)
        return aggregate(windows[ok].reset_index(drop=True), preds[n][ok], top)
    person = {n: covered(n) for n in names}
    images = []

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for n in names:
        units, p = person[n]
        y = (units["y"].to_numpy() == pos).astype(int)
        fpr, tpr = _roc(y, p[:, pos])
        ax.plot(fpr, tpr, label=f"{n} ({metrics['models'][n][top]['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity",
           title=f"ROC per {top} ({classes[pos]} vs rest)")
    ax.legend(fontsize=7)
    images.append((f"ROC per model, per {top}", _save(fig, out / "roc.png")))

    best = max(names, key=lambda n: metrics["models"][n][top]["roc_auc"])
    cols = min(4, len(names))
    rows_ = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows_, cols, figsize=(3.2 * cols, 3 * rows_), squeeze=False)
    for ax, n in zip(axes.flat, names):
        units, p = person[n]
        cm = np.zeros((len(classes), len(classes)), int)
        for t, q in zip(units["y"], p.argmax(axis=1)):
            cm[t, q] += 1
        ax.imshow(cm, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(classes)), classes, fontsize=6, rotation=30)
        ax.set_yticks(range(len(classes)), classes, fontsize=6)
        ax.set_title(n + (" (best)" if n == best else ""), fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("predicted")
    fig.supylabel("true")
    images.append((f"Confusion matrices, per {top}", _save(fig, out / "confusion.png")))

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for n in names:
        units, p = person[n]
        conf = p.max(axis=1)
        correct = p.argmax(axis=1) == units["y"].to_numpy()
        edges = np.linspace(0, 1, 6)
        idx = np.clip(np.digitize(conf, edges) - 1, 0, 4)
        xs = [conf[idx == b].mean() for b in range(5) if np.any(idx == b)]
        ys = [correct[idx == b].mean() for b in range(5) if np.any(idx == b)]
        ax.plot(xs, ys, "o-", label=n, ms=3)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", title=f"Reliability per {top} (temperature-scaled)")
    ax.legend(fontsize=7)
    images.append(("Reliability diagram", _save(fig, out / "reliability.png")))

    trained = [n for n in names if info.models[n]["folds"] and "history" in info.models[n]["folds"][0]]
    if trained:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, n in enumerate(trained):
            folds = info.models[n]["folds"]
            for f in folds:  # many folds (leaving one person out): fainter lines, so that the bulk shows
                h = pd.DataFrame(f["history"])
                ax.plot(h.epoch, h.val_loss, color=f"C{i}", alpha=min(0.6, max(0.08, 6 / len(folds))),
                        lw=1 if len(folds) <= 20 else 0.6, label=n if f["fold"] == 0 else None)
        ax.set(xlabel="epoch", ylabel="validation loss", title="Training curves (one line per fold)")
        for handle in ax.legend(fontsize=7).legend_handles:
            handle.set_alpha(1)
        images.append(("Training curves", _save(fig, out / "training_curves.png")))

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    for i, n in enumerate(names):
        units, p = person[n]
        y = units["y"].to_numpy()
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(y))
        for c in range(len(classes)):
            ax.scatter(p[y == c, pos], i + jitter[y == c], s=10, color=f"C{c}",
                       label=classes[c] if i == 0 else None, alpha=0.8)
    ax.axvline(0.5, color="k", lw=0.6, ls=":")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel=f"P({classes[pos]}) per {top}", title=f"Per-{top} probabilities (out-of-fold)")
    ax.legend(fontsize=7, loc="lower right")
    images.append((f"Per-{top} probability strip", _save(fig, out / "person_strip.png")))

    curves = {n: e["accuracy_coverage"] for n, e in metrics["models"].items() if e.get("accuracy_coverage")}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for n, c in curves.items():
            ax.plot([x["coverage"] for x in c], [x["accuracy"] for x in c], "o-", ms=3, label=n)
        ax.invert_xaxis()
        ax.set(xlabel="share of people kept (least certain withheld)", ylabel="accuracy",
               title="Accuracy-coverage (test people)")
        ax.legend(fontsize=7)
        images.append(("Accuracy when the least certain are withheld", _save(fig, out / "accuracy_coverage.png")))

    table = ablation_table(metrics)
    proto = metrics["protocol"]
    warning = ""
    if proto.get("leaky_split"):
        warning = ("<p class=leak><b>Leaky split: recordings of one person are on both sides of the split "
                   "(--split record --allow-leaky-split). These figures overstate how the models do on new "
                   "people; they are here only to show by how much.</b></p>")
    coverage = ""
    if metrics.get("complete_samples", 0) < metrics.get("samples", 0):
        coverage = (f"<p>Samples ({metrics['unit']}s): {metrics['samples']}, of which {metrics['complete_samples']} "
                    "have every modality. Coverage per modality: "
                    + ", ".join(f"{m} {v:.0%}" for m, v in metrics["coverage"].items())
                    + ". Each model is scored on the samples it covers; 'AUC, complete' on the samples with every "
                    "modality; ablations on those too.</p>")
    group = "record (LEAKY)" if proto.get("leaky_split") else "person"
    scheme = (f"Leave one {group} out ({proto['folds']} folds)" if proto.get("leave_one_out") else
              f"{proto['folds']}-fold cross-validation grouped by {group}")
    counts = proto.get("split_people")  # from run.json: shown as text, whatever it holds
    split_people = ", ".join(f"{k} {v}" for k, v in counts.items()) if isinstance(counts, dict) else str(counts)
    body = [f"<h1>symptomfuse evaluation</h1><p class=notice><b>{html.escape(NOTICE)}</b></p>", warning, coverage,
            (f"<p>A fixed split by person ({html.escape(split_people)} "
             f"people): dev people for every choice, calib people for the temperatures, test people scored once; "
             if proto.get("split") == "fixed" else
             f"<p>{scheme}, ")
            + f"{proto['people']} people, "
            f"seed {proto['seed']}. Every prediction is out-of-fold; probabilities are temperature-scaled on "
            f"{'calib' if proto.get('split') == 'fixed' else 'validation'} people; windows are averaged per "
            f"recording and per person. Intervals: 95% bootstrap "
            f"over people. Rows 'without m' are fused models with modality m removed at inference.</p>",
            "<h2>Fusion ablation</h2>", table.to_html(index=False, float_format=lambda v: f"{v:.3f}"),
            f"<p>{html.escape(choice)}</p>" if (choice := choice_summary(metrics)) else "",
            f"<h2>Abstention (per {top})</h2>",
            pd.DataFrame([{"model": n, **metrics["models"][n]["abstention"]} for n in names]).to_html(
                index=False, float_format=lambda v: f"{v:.3f}")]
    body += _detail_sections(metrics)
    for title, img in images:
        body.append(f"<h2>{html.escape(title)}</h2><img src='report/{img}' style='max-width:100%'>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>symptomfuse report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
            "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}.notice{background:#fff3cd;"
            "padding:8px}.leak{background:#f8d7da;color:#842029;padding:8px}</style></head><body>" + "\n".join(body) + "</body></html>")
    atomic_write_text(run / "report.html", page)
