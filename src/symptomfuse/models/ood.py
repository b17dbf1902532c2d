"""Is an input like the data a model was trained on? A density of each modality's encoder embeddings.

A model trained on synthetic vowels, handed a real voice, still answers, and may answer 0.99. Before a
prediction is shown, the live engine asks how far the input's embedding lies from the embeddings of the
training windows: the Mahalanobis distance under a Gaussian fitted to the training people's embeddings
(Ledoit-Wolf shrinkage, so that a 32-d covariance from a few hundred windows is well conditioned). The
threshold is the 99th percentile of the distances of the validation people's windows, so about 1 in 100
windows of people like those is flagged; ``score`` is distance / threshold, above 1 "unlike the training
data". Stored beside the model's weights as safetensors (mean, precision, threshold); never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from symptomfuse.atomic import atomic_path

QUANTILE = 0.99


@dataclass
class EmbeddingDensity:
    mean: np.ndarray  # (d,)
    precision: np.ndarray  # (d, d): the inverse of the shrunk covariance
    threshold: float  # distance above which an input is unlike the training data

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, quantile: float = QUANTILE) -> "EmbeddingDensity":
        """Fit on training embeddings (n, d); set the threshold on validation embeddings (the training
        ones when there are none)."""
        from sklearn.covariance import LedoitWolf

        train = np.asarray(train, np.float64)
        if len(train) < 2:
            raise ValueError("an embedding density needs at least 2 training embeddings")
        lw = LedoitWolf().fit(train)
        density = cls(lw.location_, lw.precision_, 1.0)
        ref = np.asarray(val, np.float64) if len(val) else train
        density.threshold = float(max(np.quantile(density.distance(ref), quantile), 1e-9))
        return density

    def distance(self, emb: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``emb`` (n, d)."""
        d = np.asarray(emb, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def score(self, emb: np.ndarray) -> np.ndarray:
        """Distance over the threshold: above 1, unlike the training data."""
        return self.distance(emb) / self.threshold

    def save(self, path: Path) -> None:
        tensors = {"mean": torch.from_numpy(np.asarray(self.mean, np.float64)),
                   "precision": torch.from_numpy(np.asarray(self.precision, np.float64)),
                   "threshold": torch.tensor([self.threshold], dtype=torch.float64)}
        with atomic_path(Path(path)) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, path: Path, dim: int | None = None) -> "EmbeddingDensity":
        """Read a saved density; refuses one whose shapes do not fit each other (or ``dim``)."""
        t = load_file(str(path))
        if set(t) != {"mean", "precision", "threshold"}:
            raise ValueError(f"{path}: expected mean, precision and threshold, found {sorted(t)}")
        mean, precision, threshold = t["mean"].numpy(), t["precision"].numpy(), float(t["threshold"].numpy()[0])
        d = len(mean)
        if mean.ndim != 1 or precision.shape != (d, d) or (dim is not None and d != dim):
            raise ValueError(f"{path}: a density of shape {mean.shape}/{tuple(precision.shape)} does not fit "
                             f"embeddings of {dim if dim is not None else d} dimensions")
        if not (np.isfinite(threshold) and threshold > 0):
            raise ValueError(f"{path}: threshold must be a positive number, got {threshold}")
        return cls(mean, precision, threshold)
