"""Person-grouped splits: k folds stratified by label with every person in exactly one fold, an inner
validation split of the training people, an optional held-out list, and a leak check."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold
from symptomfuse.errors import UsageError


class LeakError(UsageError):
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
    val: np.ndarray  # validation / dev (early stopping, late-fusion weights; calibration unless calib is given)
    test: np.ndarray
    calib: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # calibration people (temperature), when a split names them


LEAVE_ONE_OUT = "loo"


def person_folds(people: np.ndarray, y: np.ndarray, k: int | str = 5, seed: int = 0,
                 held_out: list[str] | None = None, groups: np.ndarray | None = None) -> tuple[list[Fold], np.ndarray]:
    """Folds over windows, grouped by person and stratified by label; ``k`` folds, or ``LEAVE_ONE_OUT``:
    one fold per person (the protocol of many small clinical studies), each person's windows tested by
    models trained on everyone else.

    Labels may be one per person (a diagnosis) or differ between a person's windows (e.g. spoken
    digits); either way every person is in exactly one test fold. Inside each fold's training people a
    further grouped split sets aside validation people. Returns the folds and the window indices of the
    held-out people (empty when none are given); the held-out people are in no fold.
    """
    people = np.asarray(people).astype(str)
    leaky = groups is not None  # a record-wise split: only to show how much a leak inflates results
    groups = people if groups is None else np.asarray(groups).astype(str)
    y = np.asarray(y)
    held = np.isin(people, list(held_out or []))
    if held_out and not held.any():
        raise UsageError(f"none of the held-out people {held_out[:5]} is in the data")
    pool = np.flatnonzero(~held)
    per_class = [len(set(groups[pool][y[pool] == c])) for c in np.unique(y[pool])]
    if k == LEAVE_ONE_OUT:  # each training side still holds every class
        if min(per_class, default=0) < 2:
            raise UsageError(f"leaving one person out needs at least 2 people in every class; the smallest class "
                             f"has {min(per_class, default=0)}")
        outer = LeaveOneGroupOut()
    elif isinstance(k, str) or k < 2 or min(per_class, default=0) < k:
        fewest = min(per_class, default=0)
        raise UsageError(f"{k}-fold cross-validation needs at least {k} people in every class; the smallest "
                         f"class has {fewest}. " + (f"Use --folds {fewest} or more data, or --folds {LEAVE_ONE_OUT} "
                                                     "(one person a fold)." if fewest >= 2 else
                                                     "A class needs 2 people or more, one to train on and one to "
                                                     "test: add people of that class."))
    else:
        outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (tr, te) in enumerate(outer.split(pool, y[pool], groups=groups[pool])):
        tr_idx = pool[tr]
        inner_k = max(2, min(5, min(len(set(groups[tr_idx][y[tr_idx] == c])) for c in np.unique(y[tr_idx]))))
        inner = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed + 1 + i)
        itr, iva = next(inner.split(tr_idx, y[tr_idx], groups=groups[tr_idx]))
        fold = Fold(i, tr_idx[itr], tr_idx[iva], pool[te])
        if not leaky:
            check_no_leak({"train": people[fold.train], "val": people[fold.val], "test": people[fold.test],
                           "held_out": people[held]})
        folds.append(fold)
    return folds, np.flatnonzero(held)


def separating_columns(x: np.ndarray, y: np.ndarray, min_per_class: int = 10) -> list[int]:
    """Columns of ``x`` (rows, columns) that give away the label ``y`` on these rows: with two classes,
    a threshold separates them perfectly; with more, every distinct value belongs to one class and each
    class to one value (the label, recoded). Classes with fewer than ``min_per_class`` rows prove nothing."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < min_per_class:
        return []
    found = []
    for j in range(x.shape[1]):
        v = x[:, j]
        ok = np.isfinite(v)
        if len(np.unique(y[ok])) < len(classes) or ok.sum() < 2 * min_per_class:
            continue
        v, yy = v[ok], y[ok]
        if len(classes) == 2:
            a, b = v[yy == classes[0]], v[yy == classes[1]]
            if a.max() < b.min() or b.max() < a.min():
                found.append(j)
        else:
            pairs = set(zip(v.tolist(), yy.tolist()))
            if len(pairs) == len(classes) == len(set(v.tolist())):
                found.append(j)
    return found


def check_label_columns(columns: dict[str, tuple[list[str], np.ndarray, np.ndarray]], folds: list[Fold]) -> None:
    """Refuse feature columns that leak the label on some fold's training people. ``columns`` maps a
    table modality to (column names, its values per window (N, d) with NaN where absent, labels (N,))."""
    leaks: dict[str, set] = {}
    for name, (cols, x, y) in columns.items():
        for fold in folds:
            rows = fold.train[np.isfinite(x[fold.train]).any(axis=1)]
            for j in separating_columns(x[rows], y[rows]):
                leaks.setdefault(name, set()).add(cols[j])
    if leaks:
        what = "; ".join(f"{m}: {', '.join(sorted(c))}" for m, c in leaks.items())
        raise LeakError(f"feature column(s) that give away the label on the training people: {what}. A column "
                        "that separates the classes perfectly is almost always the label itself or derived "
                        "from it: leave it out (curate --table NAME=FILE::cols:... or prefix:...), or pass "
                        "--allow-separating-columns if you are sure it is a real measure.")


SPLITS = ("train", "dev", "calib", "test")


def read_split_file(path) -> dict[str, str]:
    """A CSV with columns person_id and split (train, dev, calib or test; spaces around either and the
    split's capitals do not matter). A person on two rows with different splits is refused: that would
    leak."""
    from pathlib import Path

    from symptomfuse.data.manifest import read_sheet

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"split file not found: {path}")
    df = read_sheet(path, "split file")
    if not {"person_id", "split"} <= set(df.columns):
        raise UsageError(f"split file {path} needs columns person_id and split; it has {list(df.columns)}")
    df = df.assign(person_id=df.person_id.str.strip(), split=df.split.str.strip().str.lower())
    bad = sorted(set(df.split) - set(SPLITS))
    if bad:
        raise UsageError(f"split file {path}: unknown split(s) {bad}; use {', '.join(SPLITS)}")
    sides = df.groupby("person_id").split.nunique()
    twice = sorted(sides[sides > 1].index)
    if twice:
        raise LeakError(f"split file {path} puts {len(twice)} person(s) in two splits, e.g. {twice[:3]}: "
                        "each person must be in exactly one of train, dev, calib and test")
    return dict(zip(df.person_id, df.split))


def fixed_split(people: np.ndarray, assignment: dict[str, str]) -> Fold:
    """One fold from a person -> split assignment; people not named train. Refuses a split with no dev or
    no test person, and checks that no person is on two sides. People the assignment names who are not
    among ``people`` (no curated row, or an id spelt otherwise) are counted by ``not_curated``."""
    people = np.asarray(people).astype(str)
    side = np.array([assignment.get(p, "train") for p in people])
    idx = {name: np.flatnonzero(side == name) for name in SPLITS}
    for name in ("train", "dev", "test"):
        if len(idx[name]) == 0:
            raise UsageError(f"the split file leaves no {name} person among the curated ones")
    check_no_leak({name: people[i] for name, i in idx.items()})
    return Fold(0, idx["train"], idx["dev"], idx["test"], idx["calib"])


def not_curated(people: np.ndarray, assignment: dict[str, str]) -> dict[str, list[str]]:
    """Per split, the people ``assignment`` names who are not among ``people`` (sorted)."""
    present = set(np.asarray(people).astype(str))
    out: dict[str, list[str]] = {}
    for person, side in sorted(assignment.items()):
        if person not in present:
            out.setdefault(side, []).append(person)
    return out
