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


def person_folds(people: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0,
                 held_out: list[str] | None = None) -> tuple[list[Fold], np.ndarray]:
    """Folds over windows, grouped by person and stratified by label.

    Labels may be one per person (a diagnosis) or differ between a person's windows (e.g. spoken
    digits); either way every person is in exactly one test fold. Inside each fold's training people a
    further grouped split sets aside validation people. Returns the folds and the window indices of the
    held-out people (empty when none are given); the held-out people are in no fold.
    """
    people = np.asarray(people).astype(str)
    y = np.asarray(y)
    held = np.isin(people, list(held_out or []))
    if held_out and not held.any():
        raise ValueError(f"none of the held-out people {held_out[:5]} is in the data")
    pool = np.flatnonzero(~held)
    per_class = [len(set(people[pool][y[pool] == c])) for c in np.unique(y[pool])]
    if k < 2 or min(per_class, default=0) < k:
        raise ValueError(f"{k}-fold cross-validation needs at least {k} people in every class; the smallest "
                         f"class has {min(per_class, default=0)}. Use --folds {max(2, min(per_class, default=2))} "
                         "or more data.")
    outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (tr, te) in enumerate(outer.split(pool, y[pool], groups=people[pool])):
        tr_idx = pool[tr]
        inner_k = max(2, min(5, min(len(set(people[tr_idx][y[tr_idx] == c])) for c in np.unique(y[tr_idx]))))
        inner = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed + 1 + i)
        itr, iva = next(inner.split(tr_idx, y[tr_idx], groups=people[tr_idx]))
        fold = Fold(i, tr_idx[itr], tr_idx[iva], pool[te])
        check_no_leak({"train": people[fold.train], "val": people[fold.val], "test": people[fold.test],
                       "held_out": people[held]})
        folds.append(fold)
    return folds, np.flatnonzero(held)
