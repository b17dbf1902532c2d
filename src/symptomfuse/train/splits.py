"""Person-grouped splits: k folds stratified by label with every person in exactly one fold, an inner
validation split of the training people, an optional held-out list, and a leak check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


class LeakError(ValueError):
    """A person appears in more than one split."""


def check_no_leak(splits: dict[str, np.ndarray]) -> None:
    """Raise ``LeakError`` if any person is in two of the named splits (arrays of person ids)."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(splits[a]) & set(splits[b])
            if shared:
                raise LeakError(f"{len(shared)} person(s) in both {a!r} and {b!r}, e.g. {sorted(shared)[:3]}: "
                                "splits must be grouped by person")


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # window indices
    val: np.ndarray  # inner validation (early stopping, calibration, late-fusion weights)
    test: np.ndarray


def _person_labels(people: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, first = np.unique(people, return_index=True)
    return uniq, y[first]


def person_folds(people: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0,
                 held_out: list[str] | None = None) -> tuple[list[Fold], np.ndarray]:
    """Folds over windows, grouped by person and stratified by label.

    Returns the folds and the window indices of the held-out people (empty when none are given); the
    held-out people are in no fold.
    """
    people = np.asarray(people).astype(str)
    held = np.isin(people, list(held_out or []))
    if held_out and not held.any():
        raise ValueError(f"none of the held-out people {held_out[:5]} is in the data")
    pool = np.flatnonzero(~held)
    uniq, labels = _person_labels(people[pool], y[pool])
    min_class = np.bincount(labels).min() if len(labels) else 0
    if k < 2 or min_class < k:
        raise ValueError(f"{k}-fold cross-validation needs at least {k} people in every class; the smallest "
                         f"class has {min_class}. Use --folds {max(2, min_class)} or more data.")
    outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (tr, te) in enumerate(outer.split(uniq, labels, groups=uniq)):
        inner_k = max(2, min(5, np.bincount(labels[tr]).min()))
        inner = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed + 1 + i)
        itr, iva = next(inner.split(uniq[tr], labels[tr], groups=uniq[tr]))
        to_idx = lambda ps: pool[np.isin(people[pool], ps)]  # noqa: E731
        fold = Fold(i, to_idx(uniq[tr][itr]), to_idx(uniq[tr][iva]), to_idx(uniq[te]))
        check_no_leak({"train": people[fold.train], "val": people[fold.val], "test": people[fold.test],
                       "held_out": people[held]})
        folds.append(fold)
    return folds, np.flatnonzero(held)
