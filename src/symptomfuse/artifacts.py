"""The typed contracts between stages that are written to disk: a run's model specs, its prediction
sets and ``run.json``. Each file carries a schema version; readers refuse another version with a message
instead of misreading it. (The feature contract is in ``contract``; an export's ``export.json`` in
``stream.export``; a live event in ``stream.engine``.)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from symptomfuse.atomic import read_json
from symptomfuse.contract import FeatureContract
from symptomfuse.errors import UsageError

RUN_SCHEMA = "symptomfuse-run/2"
UNITS = ("recording", "session", "person")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a model's name: also the name of its files


def _from(cls, data: dict):
    if not isinstance(data, dict):
        raise UsageError(f"run.json: a {cls.__name__} is {str(data)[:80]!r}, not an object: train again")
    known = {f.name for f in fields(cls)}
    extra = set(data) - known
    if extra:
        raise UsageError(f"{cls.__name__} has unknown key(s) {sorted(extra)}")
    return cls(**data)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_folds(name: str, folds) -> None:
    """A model's per-fold records in run.json (written by ``train.crossval``; their keys differ by kind of
    model), checked before the report and export read them: a whole fold number, once each; a positive
    temperature; a training history of numbered epochs and losses; the name of the model chosen."""
    def damaged(what: str):
        return UsageError(f"run.json: model {name}: {what}: the run folder is damaged; train again")

    if not isinstance(folds, list) or len(folds) > 100_000:
        raise damaged("folds is not a list of fold records")
    seen = set()
    for r in folds:
        fold = r.get("fold") if isinstance(r, dict) else None
        if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0 or fold in seen:
            raise damaged(f"a fold record without a fold number of its own ({str(r)[:80]})")
        seen.add(fold)
        t = r.get("temperature", 1.0)
        if not _number(t) or not 0 < t < 1e6:
            raise damaged(f"fold {fold} has temperature {t!r}, not a positive number")
        history = r.get("history", [])
        if not isinstance(history, list) or not all(
                isinstance(e, dict) and _number(e.get("epoch")) and _number(e.get("val_loss")) for e in history):
            raise damaged(f"fold {fold} has a training history that is not a list of epochs with losses")
        if not isinstance(r.get("chosen", ""), str):
            raise damaged(f"fold {fold} names no model as the one it chose")


@dataclass
class ModelSpec:
    """One model of a run.

    * a single-modality or fused network: ``encoders`` (modality -> encoder config), ``fusion`` (None for a
      single modality), and ``init_from`` (modality -> the model of the same fold whose trained encoder it
      starts from: a fused model's frozen encoders);
    * a late fusion: ``late`` and ``members`` (modality -> the single-modality model giving its probabilities);
    * a scikit-learn baseline: ``baseline`` (lr, rf, gb) over ``modalities`` (summary features, concatenated);
    * a model chosen on validation people: ``candidates`` (models of the run); in each fold, the candidate
      with the best figure on that fold's validation people gives the test predictions
      (``train.crossval.choose_on_validation``), so that the choice of a model costs what it costs.
    """

    name: str
    modalities: list[str]
    encoders: dict = field(default_factory=dict)
    fusion: dict | None = None
    init_from: dict = field(default_factory=dict)
    late: str | None = None
    members: dict = field(default_factory=dict)
    baseline: str | None = None
    candidates: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.candidates:
            return "chosen"
        if self.late is not None:
            return "late"
        if self.baseline is not None:
            return "baseline"
        return "fused" if self.fusion is not None else "single"

    @property
    def trained(self) -> bool:
        """A network with weights on disk (exportable)."""
        return self.kind in ("single", "fused")


@dataclass
class PredictionSet:
    """Out-of-fold probabilities of one model, with ``dropped`` modalities removed at inference."""

    model: str
    dropped: list[str] = field(default_factory=list)

    @property
    def file(self) -> str:
        return f"{self.model}{''.join(f'-without-{m}' for m in self.dropped)}.csv"


@dataclass
class RunInfo:
    protocol: dict
    contract: FeatureContract
    unit: str
    models: dict  # name -> {"spec": ModelSpec, "folds": [per-fold records]}
    predictions: list  # PredictionSet
    train: dict
    run_id: str = ""

    @property
    def classes(self) -> list[str]:
        return list(self.contract.classes)

    def spec(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise UsageError(f"no model {name!r} in this run; it has {', '.join(self.models)}")
        return self.models[name]["spec"]

    def to_json(self) -> dict:
        return {"schema": RUN_SCHEMA, "run_id": self.run_id, "protocol": self.protocol,
                "contract": self.contract.to_json(), "unit": self.unit, "train": self.train,
                "models": {n: {"spec": asdict(m["spec"]), "folds": m["folds"]} for n, m in self.models.items()},
                "predictions": [asdict(p) for p in self.predictions]}

    @classmethod
    def from_json(cls, data: dict) -> "RunInfo":
        """Rebuild and check run.json: its schema, its unit, and that every prediction set is of a model of
        the run (by a name that is a file name, never a path) without modalities that model does not have."""
        if not isinstance(data, dict) or data.get("schema") != RUN_SCHEMA:
            raise UsageError(f"run.json has schema {data.get('schema') if isinstance(data, dict) else None!r}; this "
                             f"version reads {RUN_SCHEMA!r}: train again with this version")
        try:
            info = cls(data["protocol"], FeatureContract.from_json(data["contract"]), data["unit"],
                       {n: {"spec": _from(ModelSpec, m["spec"]), "folds": m["folds"]} for n, m in data["models"].items()},
                       [_from(PredictionSet, p) for p in data["predictions"]], data["train"], data.get("run_id", ""))
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"run.json is malformed ({type(exc).__name__}: {exc}): train again") from None
        for key in ("folds", "people", "seed"):  # what the report and export read from the protocol
            value = info.protocol.get(key) if isinstance(info.protocol, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed"):
                raise UsageError(f"run.json: protocol.{key} is {value!r}, not a whole number: train again")
        if info.unit not in UNITS:
            raise UsageError(f"run.json: unit {info.unit!r} is not one of {UNITS}: train again")
        for name, m in info.models.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name) or m["spec"].name != name:
                raise UsageError(f"run.json: model {name!r} is not a model name (letters, digits, '_', '.', '-') "
                                 "or not its spec's: train again")
            candidates = m["spec"].candidates
            if not isinstance(candidates, list) or not all(isinstance(c, str) and c in info.models and c != name
                                                           for c in candidates):
                raise UsageError(f"run.json: model {name} chooses among {candidates!r}, which are not all "
                                 "other models of the run: train again")
        for name, m in info.models.items():
            _check_folds(name, m["folds"])
        for ps in info.predictions:
            if not isinstance(ps.model, str) or ps.model not in info.models:
                raise UsageError(f"run.json: predictions of {ps.model!r}, which is not a model of the run: train again")
            spec = info.spec(ps.model)
            if not isinstance(ps.dropped, list) or not all(isinstance(m, str) and m in spec.modalities
                                                           for m in ps.dropped):
                raise UsageError(f"run.json: predictions of {ps.model} without {ps.dropped!r}, which are not among its "
                                 f"modalities {spec.modalities}: train again")
        return info

    @classmethod
    def load(cls, run: Path) -> "RunInfo":
        path = Path(run) / "run.json"
        if not path.exists():
            raise FileNotFoundError(f"{run} is not a run folder (no run.json): run `symptomfuse train` first")
        info = cls.from_json(read_json(path, "train again"))
        from symptomfuse.train.runfolder import check_consistent

        check_consistent(Path(run), info.run_id)  # never a folder that mixes two runs
        return info
