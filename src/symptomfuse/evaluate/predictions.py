"""A trained run's out-of-fold predictions, the levels they are scored at, and each model's point ROC AUC.

`evaluate` scores these predictions with intervals and writes metrics.json. `export` ranks the fused
models by the same cross-validated ROC AUC (``cross_validated_auc``), computed here from the predictions.
So it does not depend on `evaluate` having run, and the two can run side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from symptomfuse.artifacts import RunInfo
from symptomfuse.data.manifest import check_lines, read_checked_csv
from symptomfuse.errors import UsageError
from symptomfuse.evaluate.metrics import LEVELS, aggregate, compute

LEVELS_BY_UNIT = {"recording": LEVELS, "session": ("session", "person"), "person": ("person",)}


_REDO = "the run folder was edited or damaged: train again"


def load_predictions(run: Path) -> tuple[RunInfo, pd.DataFrame, dict[tuple, np.ndarray]]:
    """The run's ``RunInfo``, its samples, and each prediction set's (n samples, k) probabilities (NaN
    where the model gave none), keyed by (model, dropped modalities)."""
    info = RunInfo.load(run)
    samples = read_samples(run, info)
    tested = samples["fold"].to_numpy() >= 0
    preds = {}
    for ps in info.predictions:
        path = run / "predictions" / ps.file
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run folder is incomplete, train again")
        index, probs = read_probabilities(path, samples, info.classes, tested)
        p = np.full((len(samples), len(info.classes)), np.nan)
        p[index] = probs
        preds[(ps.model, tuple(ps.dropped))] = p
    return info, samples, preds


def read_samples(run: Path, info: RunInfo) -> pd.DataFrame:
    """samples.csv, checked: one line per sample in order, each with its recording, person, class and fold."""
    path = Path(run) / "samples.csv"
    samples = read_checked_csv(path, {"sample_index": "count", "recording_id": "text", "person_id": "text",
                                      "y": "count", "fold": "fold"}, _REDO)
    if samples.empty:
        raise UsageError(f"{path} lists no sample; {_REDO}")
    k = len(info.classes)
    check_lines(path, [
        (samples.sample_index.to_numpy() != np.arange(len(samples)),
         lambda i: f"sample_index is {samples.sample_index.iloc[i]}, where the lines count 0, 1, 2, ..."),
        (samples.y.to_numpy() >= k, lambda i: f"y is {samples.y.iloc[i]}, but the run has {k} classes (0 to {k - 1})"),
    ], _REDO)
    return samples


def read_probabilities(path: Path, samples: pd.DataFrame, classes: list[str], tested: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A predictions file, checked: which samples it predicts (each once; when ``tested`` is given, each
    one a fold tested, and all of them) and their (n, k) probabilities, a row either empty (no prediction)
    or summing to 1."""
    columns = [f"p_{c}" for c in classes]
    df = read_checked_csv(path, {"sample_index": "count", **{c: "probability" for c in columns}}, _REDO)
    index, p = df.sample_index.to_numpy(), df[columns].to_numpy(float)
    empty = np.isnan(p)
    total = np.nansum(p, axis=1)
    checks = [
        (index >= len(samples), lambda i: f"sample {index[i]} is not in samples.csv ({len(samples)} samples)"),
        (pd.Series(index).duplicated().to_numpy(), lambda i: f"sample {index[i]} is predicted twice"),
        (~tested[np.minimum(index, len(samples) - 1)] if tested is not None else np.zeros(len(index), bool),
         lambda i: f"sample {index[i]} was tested by no fold"),
        (empty.any(axis=1) & ~empty.all(axis=1), lambda i: "its probabilities are partly empty"),
        (~empty.any(axis=1) & (np.abs(total - 1) > 1e-3), lambda i: f"its probabilities sum to {total[i]:.4g}, not 1"),
    ]
    check_lines(path, checks, _REDO)
    missing = np.setdiff1d(np.flatnonzero(tested), index) if tested is not None else []
    if len(missing):  # every tested sample has a line, empty where the model gave no prediction
        raise UsageError(f"{path}: sample {missing[0]}, which a fold tested, has no line ({len(missing)} such "
                         f"sample(s)); {_REDO}")
    return index, p


def score_levels(info: RunInfo, tested: pd.DataFrame) -> tuple[str, ...]:
    """The levels a run is scored at, lowest first; the last is its top level. With one label per person
    (a diagnosis) the person is the unit that matters; when labels differ between a person's recordings
    (e.g. spoken digits) the recording is the top level."""
    levels = LEVELS_BY_UNIT[info.unit]
    if not bool((tested.groupby("person_id")["y"].nunique() == 1).all()):
        levels = tuple(lv for lv in levels if lv != "person")
    return levels


def cross_validated_auc(info: RunInfo, samples: pd.DataFrame, preds: dict[tuple, np.ndarray], names: list[str]
                        ) -> tuple[str, dict[str, float]]:
    """The top level and each named model's ROC AUC there over every tested sample it predicts (from
    ``load_predictions``): the figure metrics.json holds as ``models[name][top_level]["roc_auc"]``, without
    the intervals. A model with no predictions, or with an undefined AUC, gets NaN."""
    if not preds:  # a run folder without predictions (its training did not finish): nothing to rank by
        return LEVELS_BY_UNIT[info.unit][-1], {name: float("nan") for name in names}
    tested = samples["fold"].to_numpy() >= 0
    w = samples[tested].reset_index(drop=True)
    top = score_levels(info, w)[-1]
    scores = {}
    for name in names:
        p = preds[(name, ())][tested] if (name, ()) in preds else np.full((len(w), 1), np.nan)
        ok = np.isfinite(p).all(axis=1)
        if not ok.any():
            scores[name] = float("nan")
            continue
        units, pl = aggregate(w[ok].reset_index(drop=True), p[ok], top)
        scores[name] = compute(units["y"].to_numpy(), pl)["roc_auc"]
    return top, scores
