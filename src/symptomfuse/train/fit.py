"""Fitting one model on one fold with Lightning: class weights, augmentation, modality dropout, early
stopping on the validation people, and the best epoch's weights kept in memory (no pickled checkpoints).

The inputs are prepared here; the training step itself is ``train.lit.LitClassifier``. Lightning is
imported only when a model is fitted (about 3 s a process), so that a process that only plans or
collects the work (`train`'s main process, with model-folds in workers) does not pay for it."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from symptomfuse.contract import rating_values
from symptomfuse.data.dataset import WindowSet
from symptomfuse.errors import UsageError
from symptomfuse.models.multimodal import MultimodalClassifier

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", r".*module\(s\) in eval mode.*")  # frozen encoders, on purpose


@dataclass
class TrainConfig:
    max_epochs: int = 20
    patience: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-3
    modality_dropout: float = 0.3  # per sample and modality, in fused models; one modality always stays
    freeze_encoders: bool = False  # train only the fusion and head, on embeddings the encoders give once
    augment: bool = True
    loss: str = "cross-entropy"  # or "ordinal": for numbered classes (ratings), see ``ordinal_loss``
    seed: int = 0
    progress: bool = False
    accelerator: str = "cpu"  # or "cuda", or "auto" (CUDA when present); mixed precision on a GPU
    devices: int = 1  # processes (CPU) or GPUs per node that train one model data-parallel (with strategy "ddp")
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp": Lightning's DistributedDataParallel over devices x num_nodes processes
    # Prepared inputs are kept in memory up to this size (MB): every window's, per process, for the model-folds
    # it trains (``PreparedStore``); where those would not fit, a fold's training and validation windows';
    # beyond that each batch is prepared from the cache when drawn, and the encoders' scalers are fitted on
    # an evenly spaced sample of the training windows that fits (memory bounded, slower per epoch).
    prepared_mb: float = 2048.0


@torch.no_grad()
def _prepare_modality(enc: nn.Module, ws: WindowSet, m: str, index: np.ndarray, chunk: int = 64
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``index`` of modality ``m`` through ``enc.prepare``, a chunk at a time, and which of them
    have ``m`` (those without it are prepared from zeros, which their mask marks absent)."""
    has = ws.has(m)[index]
    shape = ws.contract.modality(m).input_shape()
    parts = []
    for s in range(0, max(len(index), 1), chunk):
        j, h = index[s:s + chunk], has[s:s + chunk]
        if h.all():
            raw = ws.take(m, j)
        else:
            raw = np.zeros((len(j), *shape), ws.inputs[m].dtype)
            raw[h] = ws.take(m, j[h])
        parts.append(enc.prepare(torch.from_numpy(np.asarray(raw))))
    return torch.cat(parts), torch.from_numpy(has)


def prepare(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray, chunk: int = 64
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each modality's windows ``index`` through its encoder's ``prepare``, once (no parameters, no
    randomness: the same tensors serve every epoch), and which windows have each modality. A window
    without a modality gets zeros there, which its mask marks absent (never fed to a fusion as data)."""
    index = np.asarray(index, dtype=np.int64)
    inputs, present = {}, {}
    for m, enc in model.encoders.items():
        inputs[m], present[m] = _prepare_modality(enc, ws, m, index, chunk)
    return inputs, present


@dataclass
class WindowTensors:
    """Per-modality tensors of every window of a data set (prepared inputs, or a fold's embeddings) and
    which windows have each modality; a window without one holds a stand-in."""

    values: dict[str, torch.Tensor]  # modality -> (N windows, ...)
    present: dict[str, torch.Tensor]  # modality -> (N windows,) bool

    def rows(self, windows: np.ndarray, modalities: list[str] | None = None
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The values and presence of ``windows``, for ``modalities`` (default: all)."""
        windows = torch.as_tensor(windows, dtype=torch.int64)
        names = list(self.values) if modalities is None else modalities
        return {m: self.values[m][windows] for m in names}, {m: self.present[m][windows] for m in names}


class PreparedStore:
    """Every window's prepared inputs, per modality and encoder, made once and kept for what follows in
    this process: a model-fold's training, validation, predictions and embeddings all read them, and so
    do the later folds of the same modality (a training worker takes several). Before, a video fold
    prepared its windows four times over (training, validation and test predictions, embeddings of every
    window), a third of its time. ``prepare`` works on each window alone (no parameters, no randomness,
    nothing across a batch), so the numbers are the same to the bit.

    Holds at most ``budget_mb``, the oldest entries going first. For a model whose windows would not fit,
    it lets go of everything it holds, and the model-fold prepares what it needs itself, as without a
    store (its training and validation windows, or each batch as it is drawn)."""

    def __init__(self, ws: WindowSet, budget_mb: float):
        self.ws, self.budget = ws, budget_mb * 2**20
        self._held: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _key(m: str, enc: nn.Module) -> tuple[str, str]:
        return m, json.dumps(enc.config(), sort_keys=True)

    @staticmethod
    def _size(entry: tuple[torch.Tensor, torch.Tensor]) -> int:
        return sum(t.element_size() * t.numel() for t in entry)

    def inputs(self, model: MultimodalClassifier) -> WindowTensors | None:
        """Every window's prepared inputs and presence for each of ``model``'s encoders, or None when they
        would not fit in the budget."""
        keys = {m: self._key(m, enc) for m, enc in model.encoders.items()}
        missing = {m: k for m, k in keys.items() if k not in self._held}
        all_windows = np.arange(len(self.ws.y))
        need = sum(prepared_bytes(model, self.ws, all_windows, [m]) for m in missing)
        held = sum(self._size(e) for k, e in self._held.items() if k in keys.values())
        if need + held > self.budget:  # the fold prepares its own windows instead, within the budget, so
            self._held.clear()  # nothing held here may add to it
            return None
        for k in [k for k in self._held if k not in keys.values()]:  # oldest first
            if need + sum(self._size(e) for e in self._held.values()) <= self.budget:
                break
            del self._held[k]
        for m, k in missing.items():
            self._held[k] = _prepare_modality(model.encoders[m], self.ws, m, all_windows)
        return WindowTensors({m: self._held[k][0] for m, k in keys.items()},
                             {m: self._held[k][1] for m, k in keys.items()})


@torch.no_grad()
def embed(model: MultimodalClassifier, prepared: dict[str, torch.Tensor], chunk: int = 256) -> dict[str, torch.Tensor]:
    """Each modality's embeddings of prepared inputs, in chunks."""
    n = len(next(iter(prepared.values())))
    parts = [model.embed({m: v[s:s + chunk] for m, v in prepared.items()}, prepared=True) for s in range(0, n, chunk)]
    return {m: torch.cat([p[m] for p in parts]) for m in prepared}


@torch.no_grad()
def embed_windows(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray, chunk: int = 256,
                  store: PreparedStore | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``embed(model, prepare(model, ws, index))`` and which windows have each modality, prepared a chunk
    at a time (the same chunks as ``embed``'s: the same numbers), so that only embeddings are held; or
    with ``store``, read from it."""
    index = np.asarray(index, dtype=np.int64)
    held = store.inputs(model) if store is not None else None
    done, present = [], []
    for s in range(0, max(len(index), 1), chunk):
        j = index[s:s + chunk]
        x, p = held.rows(j) if held is not None else prepare(model, ws, j)
        done.append(embed(model, x, chunk))
        present.append(p)
    return ({m: torch.cat([d[m] for d in done]) for m in model.encoders},
            {m: torch.cat([p[m] for p in present]) for m in model.encoders})


def prepared_bytes(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray,
                   modalities: list[str] | None = None) -> int:
    """Bytes that ``prepare(model, ws, index)`` would hold (one window per modality prepared to see), for
    ``modalities`` (default: all of the model's)."""
    total = 0
    for m in modalities or list(model.encoders):
        with_m = np.flatnonzero(ws.has(m))
        if len(with_m):
            one = model.encoders[m].prepare(torch.from_numpy(ws.take(m, with_m[:1])))
            total += one.element_size() * one.numel() * len(index)
    return total


class _Prepared(Dataset):
    """Prepared inputs (or embeddings) with which of them are present, and labels, fetched a whole batch
    at a time (one gather per modality)."""

    def __init__(self, tensors: WindowTensors, y: np.ndarray, rows: np.ndarray | None = None):
        """``rows``: the rows of ``tensors`` that are this data set (all of them by default; a store's every
        window for a fold's training windows), with ``y`` one label per row used."""
        self.tensors, self.y = tensors, torch.as_tensor(y)
        self.rows = None if rows is None else torch.as_tensor(np.asarray(rows, np.int64))

    def __len__(self):
        return len(self.y)

    def __getitems__(self, idx: list[int]):
        i = torch.as_tensor(idx)
        return (*self.tensors.rows(i if self.rows is None else self.rows[i]), self.y[i])


class _Streamed(Dataset):
    """Windows ``index`` prepared a batch at a time from the cache, when drawn (for folds whose prepared
    inputs would not fit in memory): the same batches as ``_Prepared`` gives, read from disk."""

    def __init__(self, model: MultimodalClassifier, ws: WindowSet, index: np.ndarray):
        self.model, self.ws, self.index = model, ws, np.asarray(index, dtype=np.int64)
        self.y = torch.as_tensor(ws.y[self.index])

    def __len__(self):
        return len(self.index)

    def __getitems__(self, idx: list[int]):
        x, present = prepare(self.model, self.ws, self.index[np.asarray(idx, dtype=np.int64)])
        return x, present, self.y[torch.as_tensor(idx)]


def _as_batch(batch):
    return batch


def ordinal_loss(logits: torch.Tensor, y: torch.Tensor, values: torch.Tensor, weight: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy plus the squared earth mover's distance between the predicted and the true rating's
    cumulative distributions (Hou et al. 2016), for classes that are ordered numbers (``values``, one per
    class, in any order): predicting 3 for a true 1 costs more than predicting 2. Gaps between ratings
    weigh the terms, so the second term is zero only when the predicted distribution sits on the truth."""
    ce = nn.functional.cross_entropy(logits, y, weight=weight, reduction="none")
    order = torch.argsort(values)
    p = torch.softmax(logits, dim=1)[:, order]
    truth = nn.functional.one_hot(y, len(values)).to(p.dtype)[:, order]
    gaps = (values[order][1:] - values[order][:-1]).to(p.dtype)
    emd = ((p.cumsum(1) - truth.cumsum(1))[:, :-1] ** 2 * gaps).sum(1)
    per = ce + emd * (weight[y] if weight is not None else 1.0)
    return per.sum() if reduction == "sum" else per.mean()


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _lightning():
    """Lightning, imported where a model is fitted (``train``'s planning process never needs it), with its
    informational lines silenced: "GPU available", "TPU available", a tip to install a cloud logger and
    "`Trainer.fit` stopped", at every fit, dozens of times in a run. Its package sets its own logger to
    INFO as it is imported, so the levels are set after the import."""
    import lightning as L

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return L


def fit(model: MultimodalClassifier, ws: WindowSet, train: np.ndarray, val: np.ndarray,
        cfg: TrainConfig, store: PreparedStore | None = None) -> tuple[MultimodalClassifier, list[dict]]:
    """Train ``model`` on windows ``train``, early-stop on ``val``; return it with its best weights. With
    ``store``, prepared inputs come from it when it can hold them."""
    L = _lightning()

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    augment = {m: ws.contract.modality(m).augmentations.get(enc.input_kind) for m, enc in model.encoders.items()}
    held = store.inputs(model) if store is not None and not cfg.freeze_encoders else None
    if cfg.freeze_encoders:  # the encoders' embeddings, once; only the fusion and head learn
        model.encoders.eval().requires_grad_(False)
        (x_train, p_train), (x_val, p_val) = embed_windows(model, ws, train), embed_windows(model, ws, val)
    elif held is not None:  # every window's prepared inputs, held by the store: the fold reads its rows
        for m, enc in model.encoders.items():  # scalers from the training windows only, a modality at a time
            x_train, p_train = held.rows(train, [m])
            enc.fit_normalizer(x_train[m][p_train[m]])
        del x_train, p_train
        return fit_prepared(model, _Prepared(held, ws.y[train], rows=train), _Prepared(held, ws.y[val], rows=val),
                            ws.classes, cfg, augment)
    else:
        budget = cfg.prepared_mb * 2**20
        need = prepared_bytes(model, ws, np.concatenate([train, val]))
        if need > budget:  # batches prepared as drawn; scalers from a sample of the training windows
            n = min(len(train), max(1, int(budget / (need / (len(train) + len(val))))))
            sample = np.unique(train[np.linspace(0, len(train) - 1, n).round().astype(int)])
            x_sample, p_sample = prepare(model, ws, sample)
            for m, enc in model.encoders.items():
                enc.fit_normalizer(x_sample[m][p_sample[m]])
            del x_sample
            return fit_prepared(model, _Streamed(model, ws, train), _Streamed(model, ws, val), ws.classes, cfg,
                                augment)
        (x_train, p_train), (x_val, p_val) = prepare(model, ws, train), prepare(model, ws, val)
        for m, enc in model.encoders.items():  # scalers from the training windows only
            enc.fit_normalizer(x_train[m][p_train[m]])
    return fit_prepared(model, (x_train, p_train, ws.y[train]), (x_val, p_val, ws.y[val]), ws.classes, cfg,
                        augment)


def fit_prepared(model: MultimodalClassifier, train: tuple | Dataset, val: tuple | Dataset, classes: list[str],
                 cfg: TrainConfig, augment: dict | None = None) -> tuple[MultimodalClassifier, list[dict]]:
    """Train on ``(inputs, present, y)`` tuples: prepared inputs, or with ``cfg.freeze_encoders`` the
    encoders' embeddings (the encoders must then be frozen already); or on data sets that give such
    batches (``_Streamed``)."""
    L = _lightning()

    from symptomfuse.train.lit import LitClassifier

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.freeze_encoders:
        model.encoders.eval().requires_grad_(False)
    train = _Prepared(WindowTensors(*train[:2]), train[2]) if isinstance(train, tuple) else train
    val = _Prepared(WindowTensors(*val[:2]), val[2]) if isinstance(val, tuple) else val
    lit = LitClassifier(model, class_weights(train.y.numpy(), len(classes)), cfg, augment,
                        rating_values(classes) if cfg.loss == "ordinal" else None)
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=g, collate_fn=_as_batch)
    val_dl = DataLoader(val, batch_size=256, collate_fn=_as_batch)
    accelerator = resolve_accelerator(cfg.accelerator)
    trainer = L.Trainer(
        accelerator=accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        precision=_precision(accelerator), max_epochs=cfg.max_epochs, deterministic=True, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=cfg.progress,
        num_sanity_val_steps=0,
        callbacks=[L.pytorch.callbacks.EarlyStopping("val_loss", patience=cfg.patience, mode="min")])
    skip_filling_new_tensors()
    trainer.fit(lit, train_dl, val_dl)
    if not hasattr(lit, "best_state"):  # no epoch's validation loss was a number
        last = lit.history[-1]["val_loss"] if lit.history else "no epoch ran"
        raise UsageError(f"training never reached a finite validation loss (last: {last}): the inputs hold NaN or "
                         "infinite values, or training diverged (try a lower --lr)")
    model.load_state_dict(lit.best_state)
    return model.cpu().eval(), lit.history


def skip_filling_new_tensors() -> None:
    """Lightning's ``deterministic=True`` turns on PyTorch's deterministic algorithms, and with them the
    filling of every new, uninitialized tensor with NaN (a guard against reading memory before writing
    it). Every operation writes its whole output, so the filling changes no result, only costs a pass
    over memory: on the demo's audio network, 267 against 253 ms a step (the same gradients to the bit),
    and 342 against 322 s for a ``train`` command of the demo's audio and video networks. The
    deterministic algorithms themselves stay on."""
    torch.utils.deterministic.fill_uninitialized_memory = False


def keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed memory for reuse in this process, rather than give blocks of 128
    KB and more back to the system at once and fault them in again on the next batch. Training allocates
    and frees the same large activations every step: on the demo's audio network this cut the system
    time of a fold from 7.1 s to 1.5 s and its wall time by a fifth, with the same numbers. Large
    blocks stay served by mmap from 32 MB (glibc's most), and the heap is trimmed above 1 GB free.
    Nothing happens where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 2**30)
    mallopt(m_mmap_threshold, 32 * 2**20)


def resolve_accelerator(name: str) -> str:
    """"auto": "cuda" when torch sees a GPU, else "cpu"; "cuda" without one is refused here, not deep in
    Lightning."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no GPU here (a CPU build of torch, or no driver); use --device cpu")
    return name


def _precision(accelerator: str) -> str:
    """Mixed precision on a GPU (bfloat16 where the GPU has it), full precision on the CPU."""
    if accelerator != "cuda":
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


@torch.no_grad()
def predict_logits(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray,
                   drop: tuple[str, ...] = (), batch_size: int = 256, store: PreparedStore | None = None
                   ) -> np.ndarray:
    """Logits (len(index), n_classes); modalities in ``drop`` are left out, as if absent. A window with
    none of the model's modalities (left) gets NaN. The model runs in the mode it is in (eval after
    training or loading; MC dropout turns its dropout on). With ``store``, the prepared inputs are read
    from it when it can hold them (the same numbers)."""
    index = np.asarray(index, dtype=np.int64)
    keep = [m for m in model.modalities if m not in drop]
    held = store.inputs(model) if store is not None else None
    out = np.full((len(index), len(ws.classes)), np.nan, np.float32)
    has = np.stack([ws.has(m)[index] for m in keep], axis=1) if keep else np.zeros((len(index), 0), bool)
    for s in range(0, len(index), batch_size):
        j, h = index[s:s + batch_size], has[s:s + batch_size]
        rows = h.any(axis=1)
        if not rows.any():
            continue
        j, h = j[rows], h[rows]
        mask = None if h.all() else {m: torch.from_numpy(h[:, i].copy()) for i, m in enumerate(keep)}
        if held is not None:  # prepared (from zeros where a modality is absent, as below)
            out[s:s + batch_size][rows] = model(held.rows(j, keep)[0], mask, prepared=True).numpy()
            continue
        x = {}
        for i, m in enumerate(keep):  # raw inputs, zeros where a modality is absent
            if mask is None:
                x[m] = torch.from_numpy(np.asarray(ws.take(m, j)))
            else:
                raw = np.zeros((len(j), *ws.contract.modality(m).input_shape()), ws.inputs[m].dtype)
                raw[h[:, i]] = ws.take(m, j[h[:, i]])
                x[m] = torch.from_numpy(raw)
        out[s:s + batch_size][rows] = model(x, mask).numpy()
    return out
