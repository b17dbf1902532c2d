"""Late fusion of per-modality class probabilities, scikit-learn style (``fit`` / ``predict_proba``).

``mean`` averages the present modalities; ``weighted`` learns one weight per modality on validation
windows (never on test windows); ``stacking`` fits a logistic regression on the modalities'
log-probabilities from validation windows, which the base models never trained on.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.linear_model import LogisticRegression

_EPS = 1e-6


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0))))


class MeanLate:
    name = "mean"

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "MeanLate":
        self.modalities_ = sorted(probas)
        return self

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        present = [m for m in self.modalities_ if m in probas]
        if not present:
            raise ValueError(f"no probabilities for any of {self.modalities_}")
        return np.mean([probas[m] for m in present], axis=0)


class WeightedLate:
    """Convex weights over modalities chosen on a grid (step ``step``) to minimise validation log loss."""

    name = "weighted"

    def __init__(self, step: float = 0.05):
        self.step = step

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "WeightedLate":
        self.modalities_ = sorted(probas)
        n = round(1 / self.step)
        best, best_w = np.inf, None
        for combo in itertools.product(range(n + 1), repeat=len(self.modalities_) - 1):
            if sum(combo) > n:
                continue
            w = np.array(list(combo) + [n - sum(combo)]) / n
            loss = _log_loss(sum(wi * probas[m] for wi, m in zip(w, self.modalities_)), y)
            if loss < best - 1e-12:
                best, best_w = loss, w
        self.weights_ = dict(zip(self.modalities_, best_w.tolist()))
        return self

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        present = [m for m in self.modalities_ if m in probas]
        if not present:
            raise ValueError(f"no probabilities for any of {self.modalities_}")
        w = np.array([self.weights_[m] for m in present])
        w = w / w.sum() if w.sum() > 0 else np.full(len(present), 1 / len(present))
        return sum(wi * probas[m] for wi, m in zip(w, present))


class StackingLate:
    """Logistic regression on the concatenated log-probabilities of all modalities (all must be present)."""

    name = "stacking"

    def __init__(self, C: float = 1.0):
        self.C = C

    def _x(self, probas):
        missing = [m for m in self.modalities_ if m not in probas]
        if missing:
            raise ValueError(f"stacking needs every modality it was fit on; missing {missing}")
        return np.concatenate([np.log(np.clip(probas[m], _EPS, 1.0)) for m in self.modalities_], axis=1)

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "StackingLate":
        self.modalities_ = sorted(probas)
        self.lr_ = LogisticRegression(C=self.C, max_iter=1000).fit(self._x(probas), y)
        return self

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        p = np.zeros((len(next(iter(probas.values()))), len(next(iter(probas.values()))[0])))
        p[:, self.lr_.classes_] = self.lr_.predict_proba(self._x(probas))
        return p


LATE = {"mean": MeanLate, "weighted": WeightedLate, "stacking": StackingLate}
