"""Late fusion of per-modality class probabilities, scikit-learn style (``fit`` / ``predict_proba``).

``probas`` maps modality -> (n, k) probabilities, with NaN rows where a sample lacks that modality; every
fuser takes any subset per sample, and a sample with none gets NaN. ``mean`` averages the present
modalities; ``weighted`` learns one weight per modality on validation samples (never on test samples)
and renormalises over the present ones; ``stacking`` fits a logistic regression on the log-probabilities
of each subset of modalities, from the validation samples that have that subset.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.linear_model import LogisticRegression

from symptomfuse.evaluate.metrics import log_loss

_EPS = 1e-6


def _present(probas: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """(n, M) bool: which of ``names`` each sample has (a finite row)."""
    n = len(next(iter(probas.values())))
    return np.stack([np.isfinite(probas[m]).all(axis=1) if m in probas else np.zeros(n, bool) for m in names], axis=1)


class MeanLate:
    name = "mean"

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "MeanLate":
        self.modalities_ = sorted(probas)
        return self

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        present = [m for m in self.modalities_ if m in probas]
        if not present:
            raise ValueError(f"no probabilities for any of {self.modalities_}")
        stacked = np.array([probas[m] for m in present])
        if np.isfinite(stacked).all():
            return stacked.mean(axis=0)
        with _quiet():
            return np.nanmean(stacked, axis=0)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": samples with no modality

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


class WeightedLate:
    """Convex weights over modalities chosen on a grid (step ``step``) to minimise validation log loss;
    a sample missing some modalities uses the others' weights, renormalised."""

    name = "weighted"

    def __init__(self, step: float = 0.05):
        self.step = step

    def _combine(self, probas, w: np.ndarray) -> np.ndarray:
        has = _present(probas, self.modalities_)
        p = sum(wi * np.nan_to_num(probas[m]) if m in probas else 0.0 for wi, m in zip(w, self.modalities_))
        if has.all():
            return p
        wsum = (has * w).sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(wsum > 0, p / wsum, np.nan)
        even = ~(wsum[:, 0] > 0) & has.any(axis=1)  # present modalities all weighted 0: their mean
        if even.any():
            with _quiet():
                out[even] = np.nanmean([probas[m][even] for m in self.modalities_ if m in probas], axis=0)
        return out

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "WeightedLate":
        self.modalities_ = sorted(probas)
        keep = _present(probas, self.modalities_).any(axis=1)
        n = round(1 / self.step)
        best, best_w = np.inf, None
        for combo in itertools.product(range(n + 1), repeat=len(self.modalities_) - 1):
            if sum(combo) > n:
                continue
            w = np.array(list(combo) + [n - sum(combo)]) / n
            loss = log_loss(y[keep], self._combine({m: v[keep] for m, v in probas.items()}, w), _EPS)
            if loss < best - 1e-12:
                best, best_w = loss, w
        self.weights_ = dict(zip(self.modalities_, best_w.tolist()))
        return self

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        if not any(m in probas for m in self.modalities_):
            raise ValueError(f"no probabilities for any of {self.modalities_}")
        return self._combine(probas, np.array([self.weights_[m] for m in self.modalities_]))


class StackingLate:
    """A logistic regression on the log-probabilities of each subset of modalities, fit on the validation
    samples that have every modality of the subset; a sample uses the one of its own subset (a subset with
    fewer than 4 validation samples, or only one class among them, falls back to the mean of its
    modalities)."""

    name = "stacking"

    def __init__(self, C: float = 1.0):
        self.C = C

    @staticmethod
    def _x(probas, subset):
        return np.concatenate([np.log(np.clip(probas[m], _EPS, 1.0)) for m in subset], axis=1)

    def fit(self, probas: dict[str, np.ndarray], y: np.ndarray) -> "StackingLate":
        self.modalities_ = sorted(probas)
        has = _present(probas, self.modalities_)
        self.k_ = next(iter(probas.values())).shape[1]
        self.lrs_ = {}
        for r in range(1, len(self.modalities_) + 1):
            for subset in itertools.combinations(range(len(self.modalities_)), r):
                rows = has[:, subset].all(axis=1)
                if rows.sum() < 4 or len(np.unique(y[rows])) < 2:
                    continue
                names = [self.modalities_[i] for i in subset]
                self.lrs_[subset] = LogisticRegression(C=self.C, max_iter=1000).fit(
                    self._x({m: probas[m][rows] for m in names}, names), y[rows])
        return self  # a subset without enough validation samples falls back to the mean of its modalities

    def predict_proba(self, probas: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(probas.values())))
        has = _present(probas, self.modalities_)
        out = np.full((n, self.k_), np.nan)
        for key in {tuple(np.flatnonzero(h)) for h in has if h.any()}:
            rows = (has == np.isin(np.arange(len(self.modalities_)), key)).all(axis=1)
            names = [self.modalities_[i] for i in key]
            lr = self.lrs_.get(key)
            if lr is None:
                with _quiet():
                    out[rows] = np.nanmean([probas[m][rows] for m in names], axis=0)
                continue
            p = np.zeros((int(rows.sum()), self.k_))
            p[:, lr.classes_] = lr.predict_proba(self._x({m: probas[m][rows] for m in names}, names))
            out[rows] = p
        return out


LATE = {"mean": MeanLate, "weighted": WeightedLate, "stacking": StackingLate}
