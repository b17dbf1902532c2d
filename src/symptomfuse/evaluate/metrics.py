"""Metrics at three levels (window, recording, person) with 95% bootstrap intervals over people.

Window probabilities are aggregated to recordings and people by their mean. For two classes the
positive class is the second one (the feature contract stores the explicit positive class last); for more classes, ROC AUC is
the macro one-vs-rest mean, sensitivity the macro recall and specificity the macro one-vs-rest
specificity. ECE is the expected calibration error of the top class over 10 equal-width bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LEVELS = ("window", "recording", "person")
METRICS = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "f1", "brier", "ece", "accuracy")


def aggregate(windows: pd.DataFrame, proba: np.ndarray, level: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Units of ``level`` with their person, true class index (column ``y``) and mean probabilities."""
    if level == "window":
        units = windows[["person_id", "y"]].copy()
        return units.reset_index(drop=True), np.asarray(proba)
    key = {"recording": "recording_id", "session": "recording_id", "person": "person_id"}[level]
    cols = [f"_p{k}" for k in range(proba.shape[1])]
    df = pd.concat([windows[list(dict.fromkeys([key, "person_id", "y"]))].reset_index(drop=True),
                    pd.DataFrame(proba, columns=cols)], axis=1)
    g = df.groupby(key, sort=True)
    units = g[["y"] if key == "person_id" else ["person_id", "y"]].first().reset_index()
    return units, g[cols].mean().to_numpy()


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (``scipy.stats.rankdata``'s "average", the same numbers,
    without its per-call overhead: the bootstrap calls this tens of thousands of times)."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    first = np.concatenate(([True], sorted_s[1:] != sorted_s[:-1]))
    group = np.cumsum(first) - 1  # tie group of each sorted position
    bounds = np.concatenate((np.flatnonzero(first), [len(s)]))
    ranks = np.empty(len(s))
    ranks[order] = 0.5 * (bounds[group + 1] + bounds[group] + 1)
    return ranks


def auc_binary(y: np.ndarray, s: np.ndarray) -> float:
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return np.nan
    r = _average_ranks(np.asarray(s))
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """Expected calibration error over 10 equal-width bins of ``conf``: per bin, |mean confidence - accuracy|
    weighted by the bin's share. Each bin's values are summed in their own order, as ``conf[bin].mean()``
    does, so the figure does not depend on how the bins are gathered. (The counts are Python integers:
    the same quotients as NumPy's, without a NumPy scalar per operation.)"""
    n = len(conf)
    bins = np.minimum((conf * 10).astype(int), 9)
    by_bin = conf[np.argsort(bins, kind="stable")]
    counts = np.bincount(bins, minlength=10).tolist()
    hits = np.bincount(bins[correct], minlength=10).tolist()
    total, start = 0, 0
    for c, h in zip(counts, hits):
        if c:
            total += abs(by_bin[start:start + c].sum() / c - h / c) * (c / n)
            start += c
    return float(total)


def compute(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """All metrics for true classes ``y`` and probabilities ``proba`` (n, classes)."""
    y = np.asarray(y)
    n, k = proba.shape
    if k == 2:
        pred = (proba[:, 1] >= threshold).astype(int)
    else:
        pred = proba.argmax(axis=1)
    true_n = np.bincount(y, minlength=k)  # per class: true members, predicted members, and both
    pred_n = np.bincount(pred, minlength=k)
    hits = np.bincount(y[pred == y], minlength=k)
    # each ratio where its denominator is not 0 (the denominators kept >= 1 only to avoid dividing by 0)
    recall = np.where(true_n > 0, hits / np.maximum(true_n, 1), np.nan)
    prec = np.where(pred_n > 0, hits / np.maximum(pred_n, 1), 0.0)
    balanced = recall.sum() / k if not np.isnan(recall).any() else np.nanmean(recall)  # nanmean, without NaN
    f1 = np.where(prec + recall > 0, 2 * prec * recall / np.maximum(prec + recall, 1e-12), 0.0)
    onehot = np.eye(k)[y]
    ece = _ece(proba.max(axis=1), proba.argmax(axis=1) == y)
    if k == 2:
        auc, sens, specificity, f1_ = auc_binary(y, proba[:, 1]), recall[1], recall[0], f1[1]
    else:
        auc = np.nanmean([auc_binary((y == c).astype(int), proba[:, c]) for c in range(k)])
        spec = np.where(true_n < n, (n - true_n - pred_n + hits) / np.maximum(n - true_n, 1), np.nan)  # one-vs-rest
        sens, specificity, f1_ = balanced, np.nanmean(spec), float(np.mean(f1))  # macro recall: balanced accuracy
    return {"roc_auc": float(auc), "balanced_accuracy": float(balanced), "sensitivity": float(sens),
            "specificity": float(specificity), "f1": float(f1_),
            "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))), "ece": float(ece),
            "accuracy": float(np.mean(pred == y))}


def with_intervals(units: pd.DataFrame, proba: np.ndarray, n_boot: int = 500, seed: int = 0) -> dict:
    """Point metrics plus ``<metric>_ci`` = [2.5%, 97.5%] percentiles over people resampled with replacement."""
    y = units["y"].to_numpy()
    out = compute(y, proba)
    people = units["person_id"].to_numpy()
    uniq, inv = np.unique(people, return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n_boot if len(uniq) else 0):  # a model that predicted no one has no interval
        idx = np.concatenate([members[i] for i in rng.integers(0, len(uniq), len(uniq))])
        yi = y[idx]
        if (yi == yi[0]).all():  # one class only
            continue
        for m, v in compute(yi, proba[idx]).items():
            draws[m].append(v)
    for m in METRICS:
        vals = np.asarray(draws[m], float)
        vals = vals[np.isfinite(vals)]
        out[f"{m}_ci"] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if len(vals) else [np.nan, np.nan]
    out["n"] = int(len(y))
    return out


def abstains(proba: np.ndarray, band: float) -> np.ndarray:
    """The one abstention rule (evaluation and live use): abstain where the top probability is within
    ``band`` of chance, i.e. below 1/k + band (two classes: below 0.5 + band). ``proba`` is (n, k) or (k,)."""
    proba = np.asarray(proba)
    return proba.max(axis=-1) < 1.0 / proba.shape[-1] + band


def abstention(units: pd.DataFrame, proba: np.ndarray, band: float = 0.1) -> dict:
    """Coverage of ``abstains`` with ``band``, and accuracy on the cases kept."""
    keep = ~abstains(proba, band)
    y = units["y"].to_numpy()
    acc = float(np.mean(proba[keep].argmax(axis=1) == y[keep])) if keep.any() else float("nan")
    return {"band": band, "coverage": float(keep.mean()), "accuracy_kept": acc,
            "accuracy_all": float(np.mean(proba.argmax(axis=1) == y))}


def conformal_sets(cal_y: np.ndarray, cal_proba: np.ndarray, proba: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Split-conformal prediction sets (score 1 - p(true class)) calibrated on (cal_y, cal_proba): a (n, k)
    bool array; each set holds the true class with probability at least 1 - alpha over exchangeable
    samples."""
    n = len(cal_y)
    scores = 1.0 - cal_proba[np.arange(n), cal_y]
    level = min(1.0, np.ceil((n + 1) * (1 - alpha)) / n)
    q = np.quantile(scores, level, method="higher")
    return (1.0 - proba) <= q


def conformal_coverage_range(n_calib: int, n_test: int, alpha: float, level: float = 0.95) -> tuple[float, float]:
    """Where the test coverage of ``conformal_sets`` falls, ``level`` of the time, with ``n_calib``
    calibration and ``n_test`` test samples that are all exchangeable. The coverage a given calibration set
    gives is Beta(k, n_calib + 1 - k) with k = ceil((n_calib + 1)(1 - alpha)) (Vovk 2012; Angelopoulos and
    Bates 2021, section 3.2), and the test people then draw from it: a beta-binomial. With few calibration
    people this range is wide, whatever the model."""
    from scipy.stats import betabinom

    k = min(int(np.ceil((n_calib + 1) * (1 - alpha))), n_calib)
    lo, hi = betabinom.ppf([(1 - level) / 2, (1 + level) / 2], n_test, k, n_calib + 1 - k)
    return float(lo / n_test), float(hi / n_test)


def accuracy_coverage(y: np.ndarray, proba: np.ndarray, coverages=(1.0, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)) -> list[dict]:
    """Accuracy on the most certain share of samples (top-class probability), withholding the least
    certain (as UFNet reports), for each coverage."""
    order = np.argsort(-proba.max(axis=1), kind="stable")
    correct = proba.argmax(axis=1)[order] == np.asarray(y)[order]
    out = []
    for c in coverages:
        keep = max(1, int(round(c * len(y))))
        out.append({"coverage": float(c), "kept": keep, "accuracy": float(correct[:keep].mean())})
    return out


def ordinal_index(proba: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The class of the predicted rating: the one whose value is nearest the expected rating."""
    return np.abs((proba @ values)[:, None] - values[None]).argmin(axis=1)


def ordinal_prediction(proba: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The predicted rating: the expected rating, rounded to the nearest class value."""
    return values[ordinal_index(proba, values)]


def ordinal_metrics(y: np.ndarray, proba: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """For ordered classes (ratings): the predicted rating (``ordinal_prediction``) against the true one:
    mean absolute error, exact and within-one accuracy; the MAE of the most probable class; and the
    confusion matrix of predicted ratings (rows: true rating, columns: predicted, in the order of ``values``)."""
    truth = values[np.asarray(y)]
    expected = proba @ values
    nearest = ordinal_prediction(proba, values)
    top = values[proba.argmax(axis=1)]
    confusion = (truth[:, None, None] == values[None, :, None]) & (nearest[:, None, None] == values[None, None, :])
    return {"mae": float(np.mean(np.abs(nearest - truth))), "mae_top_class": float(np.mean(np.abs(top - truth))),
            "mae_expected": float(np.mean(np.abs(expected - truth))),
            "exact": float(np.mean(nearest == truth)), "within_one": float(np.mean(np.abs(nearest - truth) <= 1)),
            "confusion": confusion.sum(axis=0).tolist()}


def log_loss(y: np.ndarray, proba: np.ndarray, eps: float = 1e-6) -> float:
    """Mean negative log probability of the true class (probabilities clipped at ``eps``)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), np.asarray(y)], eps, 1.0))))


def selection_score(y: np.ndarray, proba: np.ndarray, values: np.ndarray | None = None) -> tuple[str, float]:
    """The figure a model is chosen by on validation samples, higher is better, and its name: for ratings
    (``values``: ``FeatureContract.class_values``, classes curated with ``--ordinal``) minus the mean
    absolute error of ``ordinal_prediction``; otherwise the ROC AUC (macro one-vs-rest for more than two
    classes); where that is undefined (one class among the samples), minus the log loss."""
    y = np.asarray(y)
    if values is not None:
        return "mae", -float(np.mean(np.abs(ordinal_prediction(proba, values) - values[y])))
    auc = compute(y, proba)["roc_auc"]
    if np.isfinite(auc):
        return "roc_auc", float(auc)
    return "log_loss", -log_loss(y, proba)
