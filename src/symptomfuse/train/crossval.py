"""Person-grouped cross-validation of every model in a run, with out-of-fold predictions for everyone.

For each fold: single-modality models train on the fold's training people and early-stop on its
validation people; fused models take those models' encoders (same fold) and train their fusion and head
with modality dropout, the encoders frozen (or, with ``finetune_fusion``, fine-tuned together);
late fusions are fit on the validation people's probabilities. Every model's
temperature is fit on the validation people. Test people are used for nothing but predictions.

A run folder holds:
  run.json                 protocol, classes, model specs, per-fold temperatures and training curves
  windows.csv              the windows, with their fold
  predictions/NAME.csv     out-of-fold calibrated probabilities per window (NAME[-m] = m left out)
  models/NAME/foldK/       model.safetensors + config.json for each trained model and fold
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from symptomfuse.atomic import atomic_write_text
from symptomfuse.data.dataset import WindowSet
from symptomfuse.evaluate.calibration import calibrated, fit_temperature
from symptomfuse.fusion.late import LATE
from symptomfuse.models.multimodal import MultimodalClassifier, save
from symptomfuse.train.fit import TrainConfig, fit, predict_logits
from symptomfuse.train.splits import Fold


@dataclass
class ModelSpec:
    """One model of a run. ``encoders`` + ``fusion`` for a trained model; ``late`` + ``members`` (names of
    single-modality models) for a late fusion."""

    name: str
    modalities: list[str]
    encoders: dict = field(default_factory=dict)
    fusion: dict | None = None
    late: str | None = None
    members: list[str] = field(default_factory=list)


def default_specs(encoders: dict[str, dict], fusions: list[str], late: list[str],
                  fusion_modalities: list[str]) -> list[ModelSpec]:
    """One model per modality, then each intermediate and late fusion over ``fusion_modalities``."""
    specs = [ModelSpec(f"{m}_only", [m], {m: cfg}) for m, cfg in encoders.items()]
    if len(fusion_modalities) >= 2:
        enc = {m: encoders[m] for m in fusion_modalities}
        specs += [ModelSpec(f"fused_{f}", list(fusion_modalities), enc, {"name": f}) for f in fusions]
        specs += [ModelSpec(f"late_{f}", list(fusion_modalities), late=f,
                            members=[f"{m}_only" for m in fusion_modalities]) for f in late]
    return specs


def cross_validate(ws: WindowSet, specs: list[ModelSpec], folds: list[Fold], cfg: TrainConfig, out: Path,
                   protocol: dict, fusion_epochs: int | None = None, finetune_fusion: bool = False) -> dict:
    """Train and predict every spec on every fold; write the run folder; return run.json's content."""
    out = Path(out)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    n, k = len(ws.y), len(ws.classes)
    fold_of = np.full(n, -1)
    for f in folds:
        fold_of[f.test] = f.index
    preds: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {s.name: {"spec": asdict(s), "folds": []} for s in specs}
    fold_models: dict[tuple[str, int], MultimodalClassifier] = {}
    val_probs: dict[tuple[str, int], np.ndarray] = {}
    trained = [s for s in specs if s.late is None]
    total = len(folds) * len(specs)
    bar = tqdm(total=total, desc="cross-validation", unit="model-fold", disable=not cfg.progress)
    for fold in folds:
        for spec in trained + [s for s in specs if s.late is not None]:
            t0 = time.perf_counter()
            record = {"fold": fold.index}
            drops = [()] + ([(m,) for m in spec.modalities] if len(spec.modalities) > 1 else [])
            if spec.late is None:
                model = MultimodalClassifier(spec.encoders, spec.fusion, k, init_seed=cfg.seed + fold.index)
                for m in spec.modalities:  # fused models start from this fold's single-modality encoders
                    single = fold_models.get((f"{m}_only", fold.index))
                    if spec.fusion is not None and single is not None:
                        model.encoders[m].load_state_dict(single.encoders[m].state_dict())
                fused = spec.fusion is not None
                frozen = fused and not finetune_fusion and all((f"{m}_only", fold.index) in fold_models
                                                               for m in spec.modalities)
                fold_cfg = TrainConfig(**{**asdict(cfg), "seed": cfg.seed + 1000 * fold.index,
                                          "max_epochs": fusion_epochs if fused and fusion_epochs else cfg.max_epochs,
                                          "freeze_encoders": frozen, "progress": False})
                model, history = fit(model, ws, fold.train, fold.val, fold_cfg)
                fold_models[(spec.name, fold.index)] = model
                save(model, out / "models" / spec.name / f"fold{fold.index}",
                     {"classes": ws.classes, "fold": fold.index, "modalities": spec.modalities})
                val_logits = predict_logits(model, ws, fold.val)
                t = fit_temperature(val_logits, ws.y[fold.val])
                val_probs[(spec.name, fold.index)] = calibrated(val_logits, t)
                record.update(temperature=t, history=history)
                for drop in drops:
                    p = calibrated(predict_logits(model, ws, fold.test, drop=drop), t)
                    name = spec.name + "".join(f"[-{m}]" for m in drop)
                    preds.setdefault(name, np.full((n, k), np.nan))[fold.test] = p
            else:
                members = {spec.modalities[i]: name for i, name in enumerate(spec.members)}
                val = {m: val_probs[(name, fold.index)] for m, name in members.items()}
                test = {m: preds[name][fold.test] for m, name in members.items()}
                fuser = LATE[spec.late]().fit(val, ws.y[fold.val])
                val_logits = np.log(np.clip(fuser.predict_proba(val), 1e-6, 1))
                t = fit_temperature(val_logits, ws.y[fold.val])
                val_probs[(spec.name, fold.index)] = calibrated(val_logits, t)
                p = calibrated(np.log(np.clip(fuser.predict_proba(test), 1e-6, 1)), t)
                preds.setdefault(spec.name, np.full((n, k), np.nan))[fold.test] = p
                record.update(temperature=t, weights=getattr(fuser, "weights_", None))
            record["seconds"] = round(time.perf_counter() - t0, 2)
            info[spec.name]["folds"].append(record)
            bar.set_postfix_str(f"{spec.name} fold {fold.index}")
            bar.update()
    bar.close()

    tested = fold_of >= 0
    windows = ws.windows.assign(y=ws.y, fold=fold_of)
    atomic_write_text(out / "windows.csv", windows.to_csv(index_label="window_index"))
    for name, p in preds.items():
        df = pd.DataFrame(p[tested], columns=[f"p_{c}" for c in ws.classes])
        df.insert(0, "window_index", np.flatnonzero(tested))
        atomic_write_text(out / "predictions" / f"{name}.csv", df.to_csv(index=False))
    run = {"protocol": protocol, "classes": ws.classes, "train": asdict(cfg), "models": info,
           "predictions": sorted(preds)}
    atomic_write_text(out / "run.json", json.dumps(run, indent=1, default=float))
    return run
