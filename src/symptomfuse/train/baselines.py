"""Plain scikit-learn baselines, run under the same folds as the networks: a user's first question is
whether the network beats logistic regression.

Each baseline sees a flat summary of each of its modalities' model inputs (``Modality.baseline_features``:
per-band log-mel statistics, per-feature keypoint statistics, a coarse motion map, a table row as it is),
concatenated across modalities with NaN where a sample lacks one. Missing values are imputed with the
training mean and flagged (``SimpleImputer(add_indicator=True)``), features standardised, then:

  lr  logistic regression (balanced class weights)
  rf  random forest (300 trees, balanced class weights)
  gb  histogram gradient boosting (balanced class weights)
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from symptomfuse.errors import UsageError


def _lr(seed: int):
    return LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)


def _rf(seed: int):
    return RandomForestClassifier(n_estimators=300, min_samples_leaf=2, class_weight="balanced",
                                  random_state=seed, n_jobs=1)


def _gb(seed: int):
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced",
                                          random_state=seed)


BASELINES = {"lr": _lr, "rf": _rf, "gb": _gb}


def build(name: str, seed: int = 0):
    if name not in BASELINES:
        raise UsageError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
    return make_pipeline(SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
                         StandardScaler(), BASELINES[name](seed))


def fit_predict(name: str, x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], n_classes: int,
                seed: int = 0) -> list[np.ndarray]:
    """Fit baseline ``name`` on the training rows; return (n, n_classes) probabilities for each array of
    ``x_eval`` (rows that are all NaN get NaN)."""
    model = build(name, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and all-NaN column notes on tiny folds
        model.fit(x_train, y_train)
        out = []
        for x in x_eval:
            p = np.full((len(x), n_classes), np.nan)
            rows = ~np.isnan(x).all(axis=1)
            if rows.any():
                p[np.ix_(rows, model.classes_)] = model.predict_proba(x[rows])
                p[rows] = np.where(np.isnan(p[rows]), 0.0, p[rows])
            out.append(p)
    return out
