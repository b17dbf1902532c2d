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
from symptomfuse.data.manifest import read_id_csv
from symptomfuse.evaluate.metrics import LEVELS, aggregate, compute

LEVELS_BY_UNIT = {"recording": LEVELS, "session": ("session", "person"), "person": ("person",)}


def load_predictions(run: Path) -> tuple[RunInfo, pd.DataFrame, dict[tuple, np.ndarray]]:
    """The run's ``RunInfo``, its samples, and each prediction set's (n samples, k) probabilities (NaN
    where the model gave none), keyed by (model, dropped modalities)."""
    info = RunInfo.load(run)
    samples = read_id_csv(run / "samples.csv")
    preds = {}
    for ps in info.predictions:
        path = run / "predictions" / ps.file
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run folder is incomplete, train again")
        df = pd.read_csv(path)
        p = np.full((len(samples), len(info.classes)), np.nan)
        p[df.sample_index.to_numpy()] = df[[f"p_{c}" for c in info.classes]].to_numpy()
        preds[(ps.model, tuple(ps.dropped))] = p
    return info, samples, preds


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
