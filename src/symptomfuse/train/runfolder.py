"""A run folder's life: one run per folder, a run id written first, progress kept per model-fold, resume.

``symptomfuse train`` writes ``run_id.json`` before anything else: the run id and a fingerprint of the
plan (models, folds, training settings). Every model folder's ``config.json`` and every finished
model-fold's progress record carries the id, and ``run.json`` is written last. So:

- a new run in a folder that holds an earlier run clears the earlier run's artifacts first: two runs
  are never mixed (weights of one with the temperatures of another);
- ``train --resume`` continues a killed run from its last finished model-fold, after checking that the
  plan is the same, and reaches the run an uninterrupted one would have (the same seeds, the same
  weights read back bit for bit);
- ``evaluate`` and ``export`` refuse a folder whose artifacts carry another run's id.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np

from symptomfuse.atomic import atomic_path, atomic_write_text, check_not_a_file, read_json
from symptomfuse.errors import UsageError

STAMP = "run_id.json"
ARTIFACTS = ("models", "predictions", "progress", "contributions", "report", "run.json", "metrics.json",
             "report.html", "samples.csv")


def fingerprint(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()


def start(out: Path, plan: dict, resume: bool) -> tuple[str, bool]:
    """Prepare ``out`` for a run of ``plan``; returns (run id, whether an earlier run was cleared)."""
    out = Path(out)
    check_not_a_file(out)
    stamp = out / STAMP
    print_cleared = False
    if stamp.exists():
        try:
            old = json.loads(stamp.read_text())
        except ValueError:
            old = {}
        if resume:
            if old.get("plan") != fingerprint(plan):
                raise UsageError(f"{out} holds a run with other models, folds or settings: --resume continues only "
                                 "the same run (give the same arguments, or drop --resume to start afresh)")
            return old["run_id"], False
    elif resume:
        raise UsageError(f"{out} holds no run to resume (no {STAMP}): train without --resume")
    elif out.exists() and any(out.iterdir()) and not (out / "run.json").exists():
        raise UsageError(f"{out} is not empty and is not a run folder: choose a new or empty --out")
    for name in ARTIFACTS:  # an earlier run's artifacts: cleared, never mixed with this run's
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
            print_cleared = True
        elif path.exists():
            path.unlink()
            print_cleared = True
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    atomic_write_text(stamp, json.dumps({"run_id": run_id, "plan": fingerprint(plan)}, indent=1))
    return run_id, print_cleared


def save_progress(out: Path, run_id: str, name: str, fold: int, record: dict, arrays: dict[str, np.ndarray]) -> None:
    """One finished model-fold: its arrays, then its record (written last: a record means complete)."""
    folder = Path(out) / "progress" / name
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"fold{fold}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    atomic_write_text(folder / f"fold{fold}.json", json.dumps({"run_id": run_id, "record": record}, default=float))


def finished(out: Path, run_id: str, name: str, fold: int) -> bool:
    """Whether a model-fold of this run is finished: its record and its arrays read back."""
    return load_progress(out, run_id, name, fold) is not None


def load_progress(out: Path, run_id: str, name: str, fold: int) -> tuple[dict, dict[str, np.ndarray]] | None:
    """A finished model-fold of this run, or None: none, another run's, or one whose files do not read (cut
    off by a full disk, or edited), which --resume then trains again rather than stopping on."""
    folder = Path(out) / "progress" / name
    path = folder / f"fold{fold}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("run_id") != run_id or not isinstance(data.get("record"), dict):
            return None
        with np.load(folder / f"fold{fold}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return data["record"], arrays


def finish(out: Path) -> None:
    """run.json is written: the progress records are no longer needed."""
    shutil.rmtree(Path(out) / "progress", ignore_errors=True)


def _run_id_in(path: Path) -> str | None:
    """The run id a JSON file of a run folder names; a file that is not a JSON object is refused."""
    data = read_json(path, "the run folder is damaged; train again")
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object: the run folder is damaged; train again")
    return data.get("run_id")


def check_consistent(run: Path, run_id: str) -> None:
    """Every model folder of ``run`` belongs to run ``run_id``; else a UsageError naming the first that does not."""
    run = Path(run)
    if not run_id:  # a run.json without an id (written by hand, or by an older version): nothing to check
        return
    stamp = run / STAMP
    if stamp.exists():
        got = _run_id_in(stamp)
        if got != run_id:
            raise UsageError(f"{run}: {STAMP} names run {got}, run.json run {run_id}: the folder mixes two runs; "
                             "train again")
    for config in sorted((run / "models").glob("*/fold*/config.json")):
        got = _run_id_in(config)
        if got != run_id:
            raise UsageError(f"{run}: {config.relative_to(run)} belongs to run {got}, not to this run ({run_id}): "
                             "the folder mixes two runs; train again")
