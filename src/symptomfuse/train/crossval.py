"""Person-grouped cross-validation of every model in a run, with out-of-fold predictions for everyone.

The unit of a run's predictions (``unit``):

* ``recording``: a sample is a window (of a time-aligned A/V recording, or one task's recording); every
  model predicts windows, and evaluation averages them up to recordings and people. Today's behaviour.
* ``session`` / ``person``: a sample is a person's session (or the person) with whichever task
  recordings exist. Single-modality networks and baselines still train on windows; their window
  probabilities are averaged over the sample's windows of their modality. A fused network takes the
  frozen single-modality encoders of the same fold, pools each modality's embeddings over the sample's
  windows of it, and trains its fusion and head on samples, with a mask of the modalities each sample has
  (never zero-filled inputs posing as data). Late fusions combine the sample-level probabilities.

For each fold: single-modality models train on the fold's training people and early-stop on its
validation people; fused models take those models' encoders (``ModelSpec.init_from``) and train their
fusion and head with modality dropout, the encoders frozen (or, with ``finetune_fusion`` and unit
``recording``, fine-tuned together); late fusions and every temperature are fit on the validation people.
Test people are used for nothing but predictions.

A run folder holds:
  run.json                 ``artifacts.RunInfo``: protocol, feature contract, unit, model specs, per-fold
                           temperatures and training curves, the prediction sets
  samples.csv              the samples, with their fold and which modalities each has
  predictions/FILE.csv     out-of-fold calibrated probabilities per sample (``PredictionSet.file``)
  models/NAME/foldK/       model.safetensors + config.json for each trained network and fold; a single-
                           modality one also its embedding density (ood.safetensors) and its embeddings of
                           every window (embeddings.safetensors, which the fold's fused models start from)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from symptomfuse.artifacts import ModelSpec, PredictionSet, RunInfo
from symptomfuse.atomic import atomic_path, atomic_write_text
from symptomfuse.data.dataset import WindowSet
from symptomfuse.evaluate.calibration import calibrated, fit_temperature
from symptomfuse.evaluate.metrics import log_loss, selection_score
from symptomfuse.fusion.late import LATE
from symptomfuse.models.multimodal import MultimodalClassifier, save
from symptomfuse.models.multimodal import load as load_model
from symptomfuse.models.ood import EmbeddingDensity
from symptomfuse.train import baselines, runfolder
from symptomfuse.train.distributed import replica_difference
from symptomfuse.train.fit import (PreparedStore, TrainConfig, WindowTensors, embed_windows, fit, fit_prepared,
                                   keep_freed_memory, predict_logits)
from symptomfuse.train.splits import Fold
from symptomfuse.parallel import run_graph
from symptomfuse.errors import UsageError


def default_specs(encoders: dict[str, dict], fusions: list[str], late: list[str], fusion_modalities: list[str],
                  baseline_names: list[str] = ()) -> list[ModelSpec]:
    """One network per modality, each intermediate and late fusion over ``fusion_modalities``, and each
    baseline per modality (and over the fusion modalities together), and, where there are two or more
    of those but late fusions, ``CHOSEN``: in each fold, the one that did best on its validation people."""
    single = {m: f"{m}_only" for m in encoders}
    specs = [ModelSpec(single[m], [m], {m: cfg}) for m, cfg in encoders.items()]
    if len(fusion_modalities) >= 2:
        enc = {m: encoders[m] for m in fusion_modalities}
        init = {m: single[m] for m in fusion_modalities}
        specs += [ModelSpec(f"fused_{f}", list(fusion_modalities), enc, {"name": f}, init) for f in fusions]
        specs += [ModelSpec(f"late_{f}", list(fusion_modalities), late=f,
                            members={m: single[m] for m in fusion_modalities}) for f in late]
    for b in baseline_names:
        specs += [ModelSpec(f"{b}_{m}", [m], baseline=b) for m in encoders]
        if len(fusion_modalities) >= 2:
            specs.append(ModelSpec(f"{b}_fused", list(fusion_modalities), baseline=b))
    # late fusions are fitted on the validation people, so their figures there would flatter them
    candidates = [s.name for s in specs if s.kind != "late"]
    if len(candidates) >= 2:
        specs.append(ModelSpec(CHOSEN, list(dict.fromkeys(m for s in specs for m in s.modalities)),
                               candidates=candidates))
    return specs


CHOSEN = "chosen_on_val"  # the model chosen in each fold on its validation people (``choose_on_validation``)


@dataclass
class Samples:
    """The units predictions are made for: windows (unit "recording"), or sessions / people, each with
    the windows that make it up."""

    unit: str
    table: pd.DataFrame  # unit_id, person_id, session, y, and for units: recording_id = unit_id
    of_window: np.ndarray  # (N windows,) sample index of each window

    @classmethod
    def make(cls, ws: WindowSet, unit: str) -> "Samples":
        w = ws.windows
        if unit == "recording":
            table = w.assign(y=ws.y, unit_id=w.recording_id.astype(str) + ":" + w.window.astype(str))
            return cls(unit, table.reset_index(drop=True), np.arange(len(w)))
        keys = w.person_id if unit == "person" else w.person_id + "|" + w.session.astype(str)
        codes, uniq = pd.factorize(keys, sort=False)
        labels = pd.Series(ws.y).groupby(codes).nunique()
        if (labels > 1).any():
            raise UsageError(f"--unit {unit}: labels differ within a {unit}; use --unit recording")
        first = pd.Series(np.arange(len(w))).groupby(codes).first().to_numpy()
        table = pd.DataFrame({"unit_id": uniq.astype(str), "person_id": w.person_id.to_numpy()[first],
                              "session": w.session.to_numpy()[first], "y": ws.y[first]})
        table["recording_id"] = table.unit_id
        return cls(unit, table, codes)

    def __len__(self):
        return len(self.table)

    def of(self, windows: np.ndarray) -> np.ndarray:
        """The samples that the windows ``windows`` belong to."""
        return np.unique(self.of_window[windows])

    def pool(self, values: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Mean of per-window ``values`` (rows for ``windows``) per sample, column by column, leaving out
        NaN (a window without that modality); NaN where a sample has no value."""
        values = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(values)
        sums = np.zeros((len(self), values.shape[1]))
        counts = np.zeros((len(self), values.shape[1]))
        idx = self.of_window[windows]
        np.add.at(sums, idx, np.where(ok, values, 0.0))
        np.add.at(counts, idx, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)


def pooled_embeddings(model: MultimodalClassifier, ws: WindowSet, samples: Samples, windows: np.ndarray,
                       units: np.ndarray, store: PreparedStore | None = None) -> tuple[dict, dict]:
    """Per sample in ``units``: each modality's encoder embeddings averaged over the sample's windows of
    that modality (from ``windows``), and which samples have it. ``store``: prepared inputs to read."""
    return pool_embeddings(*embed_windows(model, ws, windows, store=store), samples, windows, units)


def pool_embeddings(emb: dict, present: dict, samples: Samples, windows: np.ndarray, units: np.ndarray
                    ) -> tuple[dict, dict]:
    """``pooled_embeddings`` from the embeddings ``emb`` and masks ``present`` of ``windows`` (rows in order)."""
    out, mask = {}, {}
    for m, e in emb.items():
        pooled = samples.pool(np.where(present[m].numpy()[:, None], e.numpy().astype(np.float64), np.nan), windows)
        pooled = pooled[units]
        mask[m] = torch.from_numpy(np.isfinite(pooled).all(axis=1))
        out[m] = torch.from_numpy(np.nan_to_num(pooled).astype(np.float32))
    return out, mask


class FoldEmbeddings(WindowTensors):
    """A fold's frozen encoder embeddings of every window of the data set, per modality (``values``:
    (N windows, dim)), with zeros where a window lacks the modality (``present`` says which have it). A
    single-modality model-fold writes its own (``EMBEDDINGS`` beside its weights) once it is trained; the
    fold's fused models read them rather than running the same encoders again, each for itself and for
    every modality left out."""

    @classmethod
    def compute(cls, model: MultimodalClassifier, ws: WindowSet, store: PreparedStore | None = None
                ) -> "FoldEmbeddings":
        emb, present = embed_windows(model, ws, np.arange(len(ws.y)), store=store)
        return cls({m: torch.where(present[m][:, None], e, 0.0) for m, e in emb.items()}, present)

    def save(self, folder: Path, modality: str) -> None:
        with atomic_path(folder / EMBEDDINGS) as tmp:
            save_file({"embeddings": self.values[modality].contiguous(),
                       "present": self.present[modality].contiguous()}, str(tmp))

    @classmethod
    def load(cls, model: MultimodalClassifier, ws: WindowSet, folders: dict[str, Path]) -> "FoldEmbeddings":
        """Each modality's embeddings from ``folders[m]`` (its single model-fold); computed with ``model``'s
        encoders where a file is missing or does not fit this data set and encoder (e.g. a run resumed from
        an older version)."""
        emb, present, missing = {}, {}, []
        for m in model.modalities:
            arrays = _read_embeddings(folders[m] / EMBEDDINGS) if m in folders else None
            if (arrays is not None and tuple(arrays["embeddings"].shape) == (len(ws.y), model.encoders[m].out_dim)
                    and tuple(arrays["present"].shape) == (len(ws.y),)
                    and bool((arrays["present"].numpy() == ws.has(m)).all())):
                emb[m], present[m] = arrays["embeddings"], arrays["present"]
            else:
                missing.append(m)
        if missing:
            computed = cls.compute(model, ws)
            for m in missing:
                emb[m], present[m] = computed.values[m], computed.present[m]
        return cls(emb, present)


EMBEDDINGS = "embeddings.safetensors"


def _read_embeddings(path: Path) -> dict[str, torch.Tensor] | None:
    """An embeddings file's two arrays, or None when it is missing or unreadable (then they are computed)."""
    try:
        arrays = load_file(str(path))
    except (OSError, ValueError, SafetensorError):  # missing, truncated or not safetensors
        return None
    return arrays if {"embeddings", "present"} <= set(arrays) else None


def unit_logits(model: MultimodalClassifier, emb: dict, mask: dict, drop: tuple = ()) -> np.ndarray:
    """Logits of a fused model from pooled embeddings (``pooled_embeddings``), modalities in ``drop`` left
    out; NaN for a sample with nothing left. The model runs in the mode it is in (eval after training or
    loading; MC dropout turns its dropout on)."""
    keep = {m: mask[m] & torch.tensor(m not in drop) for m in mask}
    rows = torch.stack(list(keep.values()), dim=1).any(dim=1)
    out = np.full((len(rows), model.head[-1].out_features), np.nan, np.float32)
    if rows.any():
        with torch.no_grad():
            out[rows.numpy()] = model.classify({m: v[rows] for m, v in emb.items()},
                                                      {m: v[rows] for m, v in keep.items()}).numpy()
    return out


class BaselineFeatures:
    """Each modality's baseline features (``Modality.baseline_features``) of every window that has it,
    computed on first use and kept for this process's later model-folds: every fold's baselines take
    their rows, rather than summarising the same windows again (the video summary took about 3 s a fold on
    the demo). A window's features do not depend on which windows it is computed with."""

    def __init__(self, ws: WindowSet):
        self.ws = ws
        self._features: dict[str, np.ndarray] = {}  # modality -> (all windows, features), NaN where missing

    def rows(self, m: str, windows: np.ndarray) -> np.ndarray:
        if m not in self._features:
            mod, has = self.ws.contract.modality(m), np.flatnonzero(self.ws.has(m))
            chunks = [mod.baseline_features(self.ws.take(m, has[s:s + 256])) for s in range(0, len(has), 256)]
            width = chunks[0].shape[1] if chunks else 1
            f = np.full((len(self.ws.y), width), np.nan)
            if chunks:
                f[has] = np.concatenate(chunks)
            self._features[m] = f
        return self._features[m][windows]


def _baseline_inputs(features: BaselineFeatures, spec: ModelSpec, samples: Samples, windows: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Baseline features of ``windows`` (unit recording) or of their samples (pooled): (rows, features) and
    the row ids (window or sample indices)."""
    x = np.concatenate([features.rows(m, windows) for m in spec.modalities], axis=1)
    if samples.unit == "recording":
        return x, windows
    units = samples.of(windows)
    return samples.pool(x, windows)[units], units


@dataclass
class _Job:
    """One network or baseline model-fold to fit, as sent to a worker process (everything it needs but the
    data)."""

    spec: ModelSpec
    fold: Fold
    cfg: TrainConfig
    out: Path
    run_id: str
    unit: str
    fusion_epochs: int | None
    finetune_fusion: bool


def cross_validate(ws: WindowSet, specs: list[ModelSpec], folds: list[Fold], cfg: TrainConfig, out: Path,
                   protocol: dict, fusion_epochs: int | None = None, finetune_fusion: bool = False,
                   unit: str = "recording", resume: bool = False, workers: int = 1, threads: int = 1) -> RunInfo:
    """Train and predict every spec on every fold; write the run folder (``runfolder``: one run per
    folder; with ``resume``, finished model-folds of the same run are read back, not trained again);
    return its ``RunInfo``.

    Every network model-fold trains on ``threads`` threads, in this process (``workers`` 1) or spread over
    ``workers`` processes (each fused model-fold after its fold's single-modality ones), which write their
    model-folds into the run folder; this process reads them back as a resumed run does. The numbers depend
    on ``threads`` (float rounding), never on ``workers``."""
    out = Path(out)
    plan = {"specs": [asdict(s) for s in specs], "cfg": {k: v for k, v in asdict(cfg).items() if k != "progress"},
            "folds": [[f.index, *(hashlib.sha256(np.asarray(getattr(f, a), np.int64).tobytes()).hexdigest()
                                  for a in ("train", "val", "test", "calib"))] for f in folds],
            "unit": unit, "fusion_epochs": fusion_epochs, "finetune_fusion": finetune_fusion,
            "windows": int(len(ws.y)), "contract": ws.contract.to_json(), "threads": threads}
    run_id, cleared = runfolder.start(out, plan, resume)
    if cleared and cfg.progress:
        print(f"{out} held an earlier run: its artifacts were cleared (one run per folder)", file=sys.stderr)
    if unit != "recording" and finetune_fusion:
        raise UsageError("--finetune-fusion trains on windows: use it with --unit recording")
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    samples = Samples.make(ws, unit)
    n, k = len(samples), len(ws.classes)
    fold_of = np.full(n, -1)
    for f in folds:
        fold_of[samples.of(f.test)] = f.index
    order = [s for kind in ("single", "fused", "late", "baseline", "chosen") for s in specs if s.kind == kind]
    # in worker processes: networks, then the baselines (which need no network; they fill the workers' last
    # minutes rather than run alone here after them)
    jobs = {(s.name, f.index): _Job(s, f, cfg, out, run_id, unit, fusion_epochs, finetune_fusion)
            for kinds in (("single", "fused"), ("baseline",)) for f in folds for s in order if s.kind in kinds}
    if resume:
        jobs = {key: job for key, job in jobs.items() if not runfolder.finished(out, run_id, *key)}
    bar = tqdm(total=len(folds) * len(specs), desc="cross-validation", unit="model-fold", disable=not cfg.progress)

    def advance(name: str, fold: int) -> None:
        bar.set_postfix_str(f"{name} fold {fold}")
        bar.update()

    registrations = _registrations(ws, specs)
    parallel = (workers > 1 and sum(j.spec.kind != "baseline" for j in jobs.values()) > 1 and ws.source is not None
                and registrations is not None)
    if workers > 1 and registrations is None and cfg.progress:
        print("training in this process: a modality, encoder or fusion of this run is defined inside a function, "
              "which worker processes cannot import", file=sys.stderr)
    if parallel:  # the networks in worker processes, each writing its model-folds' progress into the run folder
        needs = {key: [(src, key[1]) for src in job.spec.init_from.values() if (src, key[1]) in jobs]
                 for key, job in jobs.items()}
        run_graph(_train_job, jobs, needs, workers, setup=_worker_setup,
                  setup_args=(ws.source, threads, registrations),
                  on_done=lambda key: advance(*key), kind=lambda key: key[0])  # the longest models first
    preds: dict[tuple, np.ndarray] = {}  # (model, dropped modalities) -> test probabilities per sample
    info: dict[str, dict] = {s.name: {"spec": s, "folds": []} for s in specs}
    val_probs: dict[tuple[str, int], np.ndarray] = {}  # per sample, NaN outside the fold's validation samples
    cal_probs: dict[tuple[str, int], np.ndarray] = {}  # the same on calibration samples (or validation)
    keep_freed_memory()
    store = PreparedStore(ws, cfg.prepared_mb)  # prepared inputs, for the networks trained in this process
    features = BaselineFeatures(ws)  # and the baselines' features
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fold in folds:
            for spec in order:
                done = runfolder.load_progress(out, run_id, spec.name, fold.index) if resume or parallel else None
                if done is not None:  # trained by a worker, or before the run was interrupted: read back
                    record, arrays = done
                    if not (parallel and (spec.name, fold.index) in jobs):
                        advance(spec.name, fold.index)
                else:
                    t0 = time.perf_counter()
                    if spec.kind in ("single", "fused"):
                        record, arrays = _train_network(ws, samples, jobs[(spec.name, fold.index)], store)
                    elif spec.kind == "late":
                        record, arrays = _fit_late(samples, spec, fold, val_probs, cal_probs, preds)
                    elif spec.kind == "chosen":
                        record, arrays = choose_on_validation(samples, spec, fold, val_probs, cal_probs, preds,
                                                              ws.contract.class_values())
                    else:
                        record, arrays = _fit_baseline(features, samples, spec, fold, cfg.seed)
                    record = _save(out, run_id, spec, fold, record, arrays, t0)
                    advance(spec.name, fold.index)
                for i, drop in enumerate(_drops(spec)):
                    if f"test{i}" in arrays:
                        preds.setdefault((spec.name, drop), np.full((n, k), np.nan))[arrays["rows"]] = arrays[f"test{i}"]
                val_probs[(spec.name, fold.index)], cal_probs[(spec.name, fold.index)] = arrays["vp"], arrays["cp"]
                info[spec.name]["folds"].append(record)
    finally:
        torch.set_num_threads(previous_threads)
    bar.close()

    tested = fold_of >= 0
    table = samples.table.assign(fold=fold_of)
    for m in ws.modalities:
        table[f"has_{m}"] = (samples.pool(ws.has(m)[:, None].astype(float), np.arange(len(ws.y)))[:, 0] > 0).astype(int)
    atomic_write_text(out / "samples.csv", table.to_csv(index_label="sample_index"))
    sets = []
    for (name, drop), p in preds.items():
        ps = PredictionSet(name, list(drop))
        df = pd.DataFrame(p[tested], columns=[f"p_{c}" for c in ws.classes])
        df.insert(0, "sample_index", np.flatnonzero(tested))
        atomic_write_text(out / "predictions" / ps.file, df.to_csv(index=False))
        sets.append(ps)
    if len(folds) == 1:  # a fixed split: the dev people's probabilities (which choices are made on) and
        # the calib people's (conformal prediction sets are calibrated on them)
        for part, probs, units in (("dev", val_probs, samples.of(folds[0].val)),
                                   ("calib", cal_probs, samples.of(folds[0].calib))):
            if not len(units):
                continue
            (out / "predictions" / part).mkdir(exist_ok=True)
            for (name, _), p in probs.items():
                df = pd.DataFrame(p[units], columns=[f"p_{c}" for c in ws.classes])
                df.insert(0, "sample_index", units)
                atomic_write_text(out / "predictions" / part / PredictionSet(name).file, df.to_csv(index=False))
    run = RunInfo(protocol, ws.contract, unit, info, sorted(sets, key=lambda s: (s.model, s.dropped)), asdict(cfg),
                  run_id)
    atomic_write_text(out / "run.json", json.dumps(run.to_json(), indent=1, default=float))
    runfolder.finish(out)
    return run




def _drops(spec: ModelSpec) -> list[tuple[str, ...]]:
    """The modality sets a model's test predictions are made without: none, and (fused) each modality."""
    return [()] + ([(m,) for m in spec.modalities] if len(spec.modalities) > 1 else [])


def _train_network(ws: WindowSet, samples: Samples, job: _Job, store: PreparedStore | None = None
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """Train one network on one fold, save it, and predict: its progress record and arrays (validation and
    calibration probabilities per sample, the test samples and their probabilities with each of
    ``_drops``). Fused models start from this fold's single-modality models, read from the run folder.
    ``store`` keeps prepared inputs for the model-folds this process trains."""
    spec, fold, cfg, unit = job.spec, job.fold, job.cfg, job.unit
    n, k = len(samples), len(ws.classes)
    val_units, test_units = samples.of(fold.val), samples.of(fold.test)
    has_calib = len(fold.calib) > 0
    cal_units = samples.of(fold.calib) if has_calib else val_units
    model = MultimodalClassifier(spec.encoders, spec.fusion, k, init_seed=cfg.seed + fold.index)
    sources = {m: job.out / "models" / src / f"fold{fold.index}" for m, src in spec.init_from.items()}
    started = {m for m, folder in sources.items() if (folder / "config.json").exists()}
    for m in started:  # fused models start from this fold's single models
        model.encoders[m].load_state_dict(load_model(sources[m]).encoders[m].state_dict())
    fused = spec.fusion is not None
    frozen = fused and not job.finetune_fusion and all(m in started for m in spec.modalities)
    if fused and unit != "recording" and not frozen:
        raise UsageError(f"{spec.name}: with --unit {unit}, fused models need a single-modality model "
                         f"of each of {spec.modalities} to start from")
    fold_cfg = TrainConfig(**{**asdict(cfg), "seed": cfg.seed + 1000 * fold.index,
                              "max_epochs": job.fusion_epochs if fused and job.fusion_epochs else cfg.max_epochs,
                              "freeze_encoders": frozen, "progress": False})
    record: dict = {"fold": fold.index}
    tests = {}
    vp, cp = np.full((n, k), np.nan), np.full((n, k), np.nan)
    frozen_emb = None
    if frozen:  # the encoders' embeddings, once per window: from the single model-folds they came from
        model.encoders.eval().requires_grad_(False)
        frozen_emb = FoldEmbeddings.load(model, ws, sources)
    if fused and unit != "recording":
        train_units = samples.of(fold.train)
        tr = pool_embeddings(*frozen_emb.rows(fold.train), samples, fold.train, train_units)
        va = pool_embeddings(*frozen_emb.rows(fold.val), samples, fold.val, val_units)
        te = pool_embeddings(*frozen_emb.rows(fold.test), samples, fold.test, test_units)
        ca = pool_embeddings(*frozen_emb.rows(fold.calib), samples, fold.calib, cal_units) if has_calib else va
        y = samples.table.y.to_numpy()
        model, history = fit_prepared(model, (*tr, y[train_units]), (*va, y[val_units]), ws.classes, fold_cfg)
        val_logits, cal_logits = unit_logits(model, *va), unit_logits(model, *ca)
        ok = np.isfinite(cal_logits).all(axis=1)
        t = fit_temperature(cal_logits[ok], y[cal_units][ok])
        for drop in _drops(spec):
            tests[drop] = calibrated(unit_logits(model, *te, drop), t)
        vp[val_units], cp[cal_units] = calibrated(val_logits, t), calibrated(cal_logits, t)
    else:
        train_w = fold.train[ws_has_any(ws, spec.modalities, fold.train)]
        val_w = fold.val[ws_has_any(ws, spec.modalities, fold.val)]
        if frozen_emb is not None:
            model, history = fit_prepared(model, (*frozen_emb.rows(train_w), ws.y[train_w]),
                                          (*frozen_emb.rows(val_w), ws.y[val_w]), ws.classes, fold_cfg)

            def logits(index, drop=()):
                return unit_logits(model, *frozen_emb.rows(index), drop)
        else:
            model, history = fit(model, ws, train_w, val_w, fold_cfg, store)

            def logits(index, drop=()):
                return predict_logits(model, ws, index, drop=drop, store=store)
        val_logits = logits(val_w)
        cal_w = fold.calib[ws_has_any(ws, spec.modalities, fold.calib)] if has_calib else val_w
        cal_logits = logits(cal_w) if has_calib else val_logits
        t = fit_temperature(cal_logits, ws.y[cal_w])
        vp = samples.pool(calibrated(val_logits, t), val_w)
        cp = samples.pool(calibrated(cal_logits, t), cal_w)
        for drop in _drops(spec):
            p = calibrated(logits(fold.test, drop), t)
            tests[drop] = samples.pool(p, fold.test)[test_units]
    spread = replica_difference(model)  # data-parallel: do the processes hold the same weights?
    if spread is not None:
        record["ddp"] = {"max_weight_difference_between_ranks": spread}
    folder = job.out / "models" / spec.name / f"fold{fold.index}"
    save(model, folder, {"classes": ws.classes, "fold": fold.index, "modalities": spec.modalities,
                         "run_id": job.run_id})
    if spec.kind == "single":  # how far an input may lie from the training data (live warnings), and the
        # embeddings the fold's fused models start from
        embedded = FoldEmbeddings.compute(model, ws, store)
        embedded.save(folder, spec.modalities[0])
        record["ood"] = _fit_density(embedded, spec.modalities[0], train_w, val_w, fold.test, folder)
    record.update(temperature=t, history=history)
    return record, {"vp": vp, "cp": cp, "rows": test_units,
                    **{f"test{i}": tests[drop] for i, drop in enumerate(_drops(spec))}}


def _fit_late(samples: Samples, spec: ModelSpec, fold: Fold, val_probs: dict, cal_probs: dict,
              preds: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """A late fusion of this fold's single-modality probabilities, fitted on its validation samples and
    temperature-scaled on its calibration samples; progress record and arrays as ``_train_network``'s."""
    n, k = len(samples), next(iter(val_probs.values())).shape[1]
    val_units, test_units = samples.of(fold.val), samples.of(fold.test)
    cal_units = samples.of(fold.calib) if len(fold.calib) else val_units
    yv, yc = samples.table.y.to_numpy()[val_units], samples.table.y.to_numpy()[cal_units]
    val = {m: val_probs[(name, fold.index)][val_units] for m, name in spec.members.items()}
    cal = {m: cal_probs[(name, fold.index)][cal_units] for m, name in spec.members.items()}
    test = {m: preds[(name, ())][test_units] for m, name in spec.members.items()}
    fuser = LATE[spec.late]().fit(val, yv)
    pv, pc = fuser.predict_proba(val), fuser.predict_proba(cal)
    ok = np.isfinite(pc).all(axis=1)
    t = fit_temperature(np.log(np.clip(pc[ok], 1e-6, 1)), yc[ok])
    vp, cp = np.full((n, k), np.nan), np.full((n, k), np.nan)
    vp[val_units] = calibrated(np.log(np.clip(pv, 1e-6, 1)), t)
    cp[cal_units] = calibrated(np.log(np.clip(pc, 1e-6, 1)), t)
    record = {"fold": fold.index, "temperature": t, "weights": getattr(fuser, "weights_", None)}
    return record, {"vp": vp, "cp": cp, "rows": test_units,
                    "test0": calibrated(np.log(np.clip(fuser.predict_proba(test), 1e-6, 1)), t)}


def choose_on_validation(samples: Samples, spec: ModelSpec, fold: Fold, val_probs: dict, cal_probs: dict,
                         preds: dict, values: np.ndarray | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """In one fold, the candidate of ``spec`` that does best on the fold's validation samples
    (``selection_score``: ROC AUC, or with rating ``values`` the mean absolute error), among those that
    predict the most of them, scored on the samples they all predict. A few validation people often let
    several models separate them perfectly: ties go to the lowest log loss (then to the first candidate).
    Its validation, calibration and test probabilities become this model's. Test people play no part in
    the choice, so this model's test figures are what choosing a model on validation people gives, where
    the best test figure of many models is an optimistic one. Progress record and arrays as
    ``_train_network``'s."""
    val_units, test_units = samples.of(fold.val), samples.of(fold.test)
    y = samples.table.y.to_numpy()[val_units]
    covered = {c: np.isfinite(val_probs[(c, fold.index)][val_units]).all(axis=1) for c in spec.candidates}
    most = max(int(c.sum()) for c in covered.values())
    eligible = [c for c in spec.candidates if covered[c].sum() == most]
    both = np.logical_and.reduce([covered[c] for c in eligible])
    scores, losses, by = {}, {}, "none"
    for c in eligible:
        if both.any():
            p = val_probs[(c, fold.index)][val_units][both]
            by, scores[c] = selection_score(y[both], p, values)
            losses[c] = log_loss(y[both], p)
        else:
            scores[c] = losses[c] = float("nan")

    def rank(c):
        return (scores[c] if np.isfinite(scores[c]) else -np.inf, -losses[c] if np.isfinite(losses[c]) else -np.inf)
    chosen = max(eligible, key=rank)
    record = {"fold": fold.index, "chosen": chosen, "by": by, "validation_samples": int(both.sum()),
              "scores": scores, "log_loss": losses}
    return record, {"vp": val_probs[(chosen, fold.index)], "cp": cal_probs[(chosen, fold.index)], "rows": test_units,
                    "test0": preds[(chosen, ())][test_units]}


def _fit_baseline(features: BaselineFeatures, samples: Samples, spec: ModelSpec, fold: Fold, seed: int
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """A scikit-learn baseline on one fold, temperature-scaled on its calibration samples; progress record
    and arrays as ``_train_network``'s."""
    ws = features.ws
    n, k = len(samples), len(ws.classes)
    val_units, test_units = samples.of(fold.val), samples.of(fold.test)
    has_calib = len(fold.calib) > 0
    cal_units = samples.of(fold.calib) if has_calib else val_units
    x_tr, r_tr = _baseline_inputs(features, spec, samples, fold.train)
    x_va, r_va = _baseline_inputs(features, spec, samples, fold.val)
    x_te, r_te = _baseline_inputs(features, spec, samples, fold.test)
    x_ca, r_ca = _baseline_inputs(features, spec, samples, fold.calib) if has_calib else (x_va, r_va)
    labels = ws.y if samples.unit == "recording" else samples.table.y.to_numpy()
    keep = ~np.isnan(x_tr).all(axis=1)
    pv, pt, pc = baselines.fit_predict(spec.baseline, x_tr[keep], labels[r_tr][keep], [x_va, x_te, x_ca], k, seed)
    ok = np.isfinite(pc).all(axis=1)
    t = fit_temperature(np.log(np.clip(pc[ok], 1e-6, 1)), labels[r_ca][ok])
    pt, pv, pc = (calibrated(np.log(np.clip(p, 1e-6, 1)), t) for p in (pt, pv, pc))
    if samples.unit == "recording":
        pt, pv = samples.pool(pt, r_te)[test_units], samples.pool(pv, r_va)[val_units]
        pc = samples.pool(pc, r_ca)[cal_units]
    vp, cp = np.full((n, k), np.nan), np.full((n, k), np.nan)
    vp[val_units], cp[cal_units] = pv, pc
    return {"fold": fold.index, "temperature": t}, {"vp": vp, "cp": cp, "rows": test_units, "test0": pt}


def _save(job_out: Path, run_id: str, spec: ModelSpec, fold: Fold, record: dict, arrays: dict, t0: float) -> dict:
    """Stamp a finished model-fold's time and write its progress (a record as run.json will hold it)."""
    record["seconds"] = round(time.perf_counter() - t0, 2)
    record = json.loads(json.dumps(record, default=float))
    runfolder.save_progress(job_out, run_id, spec.name, fold.index, record, arrays)
    return record


_WORKER: dict = {}  # in a worker process of a parallel run: the curated windows, loaded once by _worker_setup


def _registrations(ws: WindowSet, specs: list[ModelSpec]) -> list[tuple[str, str, str, str]] | None:
    """The modalities, encoders and fusions a worker process must register beyond symptomfuse's own
    (a user's, or a test's): (kind, name, module, qualified name) each; None when one cannot be imported
    by a fresh process (a class defined inside a function), so the run trains in this process."""
    from symptomfuse import modalities
    from symptomfuse.models.multimodal import registered_class

    used = [("modality", m, modalities.get(m)) for m in ws.modalities]
    for spec in specs:
        used += [("encoder", e["name"], registered_class("encoder", e["name"])) for e in spec.encoders.values()]
        if spec.fusion is not None:
            used.append(("fusion", spec.fusion["name"], registered_class("fusion", spec.fusion["name"])))
    out = []
    for kind, name, cls in used:
        if cls.__module__.split(".")[0] == "symptomfuse":
            continue  # registered on import, or (feature tables) when the contract is read
        if "<locals>" in cls.__qualname__:
            return None
        out.append((kind, name, cls.__module__, cls.__qualname__))
    return sorted(set(out))


def _worker_setup(source: tuple[str, tuple[str, ...]], threads: int, registrations: list) -> None:
    import functools
    import importlib

    from symptomfuse import modalities
    from symptomfuse.data.dataset import load_curated
    from symptomfuse.models.registry import available, register

    for kind, name, module, qualname in registrations:
        cls = functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
        if kind == "modality" and name not in modalities.available():
            modalities.register(cls)
        elif kind != "modality" and name not in available(kind):
            register(kind, name)(cls)
    torch.set_num_threads(threads)
    keep_freed_memory()
    _WORKER["ws"] = load_curated(Path(source[0]), list(source[1]))


def _train_job(job: _Job) -> None:
    """A worker's model-fold: trained, saved and its progress written into the run folder."""
    t0 = time.perf_counter()
    ws = _WORKER["ws"]
    if job.spec.kind == "baseline":
        if "baseline_features" not in _WORKER:  # kept for the baselines this worker fits after this one
            _WORKER["baseline_features"] = BaselineFeatures(ws)
        record, arrays = _fit_baseline(_WORKER["baseline_features"], Samples.make(ws, job.unit), job.spec, job.fold,
                                       job.cfg.seed)
        _save(job.out, job.run_id, job.spec, job.fold, record, arrays, t0)
        return
    if "store" not in _WORKER:  # prepared inputs, kept for the model-folds this worker trains after this one
        _WORKER["store"] = PreparedStore(ws, job.cfg.prepared_mb)
    record, arrays = _train_network(ws, Samples.make(ws, job.unit), job, _WORKER["store"])
    _save(job.out, job.run_id, job.spec, job.fold, record, arrays, t0)

def _fit_density(embedded: FoldEmbeddings, m: str, train: np.ndarray, val: np.ndarray, test: np.ndarray,
                 folder: Path) -> dict:
    """Fit the embedding density of a single-modality model on its training windows, threshold on its
    validation windows, save it beside the weights (``ood.safetensors``); return its threshold and the
    share of the fold's test windows it flags (about 1% for people like the validation people)."""
    def embeddings(index):
        index = index[embedded.present[m].numpy()[index]]
        return embedded.values[m][index].numpy() if len(index) else np.zeros((0, 1))

    density = EmbeddingDensity.fit(embeddings(train), embeddings(val))
    density.save(folder / "ood.safetensors")
    test_emb = embeddings(test)
    flagged = float((density.score(test_emb) > 1).mean()) if len(test_emb) else float("nan")
    return {"threshold": density.threshold, "test_windows_flagged": flagged}


def ws_has_any(ws: WindowSet, modalities: list[str], index: np.ndarray) -> np.ndarray:
    """(len(index),) bool: windows that have at least one of ``modalities``."""
    return np.stack([ws.has(m)[index] for m in modalities], axis=1).any(axis=1)
