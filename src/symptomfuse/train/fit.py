"""Fitting one model on one fold with Lightning: class weights, augmentation, modality dropout, early
stopping on the validation people, and the best epoch's weights kept in memory (no pickled checkpoints)."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from symptomfuse.data.dataset import WindowSet
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.train.augment import AUGMENT

for _name in ("lightning", "lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)
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
    seed: int = 0
    progress: bool = False


@torch.no_grad()
def prepare(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray, chunk: int = 64) -> dict[str, torch.Tensor]:
    """Each modality's windows ``index`` through its encoder's ``prepare``, once (no parameters, no
    randomness: the same tensors serve every epoch)."""
    index = np.asarray(index)
    return {m: torch.cat([enc.prepare(torch.from_numpy(np.asarray(ws.inputs[m][index[s:s + chunk]])))
                          for s in range(0, max(len(index), 1), chunk)])
            for m, enc in model.encoders.items()}


@torch.no_grad()
def _embed(model: MultimodalClassifier, prepared: dict[str, torch.Tensor], chunk: int = 256) -> dict[str, torch.Tensor]:
    n = len(next(iter(prepared.values())))
    parts = [model.embed({m: v[s:s + chunk] for m, v in prepared.items()}, prepared=True) for s in range(0, n, chunk)]
    return {m: torch.cat([p[m] for p in parts]) for m in prepared}


class _Prepared(Dataset):
    """Prepared inputs and labels, fetched a whole batch at a time (one gather per modality)."""

    def __init__(self, inputs: dict[str, torch.Tensor], y: np.ndarray):
        self.inputs, self.y = inputs, torch.as_tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitems__(self, idx: list[int]):
        i = torch.as_tensor(idx)
        return {m: v[i] for m, v in self.inputs.items()}, self.y[i]


def _as_batch(batch):
    return batch


class LitClassifier(L.LightningModule):
    def __init__(self, model: MultimodalClassifier, class_weights: torch.Tensor, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.register_buffer("class_weights", class_weights)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict] = []
        self._train_losses: list[float] = []

    def _mask(self, batch: int) -> dict[str, torch.Tensor]:
        mods = self.model.modalities
        if len(mods) == 1 or self.cfg.modality_dropout <= 0:
            return {m: torch.ones(batch, dtype=torch.bool) for m in mods}
        keep = torch.rand(batch, len(mods), generator=self.gen) >= self.cfg.modality_dropout
        none = ~keep.any(dim=1)
        keep[none, torch.randint(0, len(mods), (int(none.sum()),), generator=self.gen)] = True
        return {m: keep[:, i] for i, m in enumerate(mods)}

    def _logits(self, x, mask=None):
        if self.cfg.freeze_encoders:  # x holds embeddings
            return self.model.classify(x, mask)
        return self.model(x, mask, prepared=True)

    def training_step(self, batch, _):
        x, y = batch
        if self.cfg.augment and not self.cfg.freeze_encoders:
            x = {m: AUGMENT[self.model.encoders[m].input_kind](v, self.gen) for m, v in x.items()}
        logits = self._logits(x, self._mask(len(y)))
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        self._train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self._logits(x), y, weight=self.class_weights, reduction="sum")
        self.log("val_loss", loss / len(y), on_epoch=True, batch_size=len(y), prog_bar=True)

    def on_validation_epoch_end(self):
        val = float(self.trainer.callback_metrics["val_loss"])
        train = float(np.mean(self._train_losses)) if self._train_losses else float("nan")
        self._train_losses = []
        if self.trainer.sanity_checking:
            return
        self.history.append({"epoch": self.current_epoch, "train_loss": train, "val_loss": val})
        if val < getattr(self, "best_val", float("inf")):
            self.best_val = val
            self.best_state = copy.deepcopy(self.model.state_dict())

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def fit(model: MultimodalClassifier, ws: WindowSet, train: np.ndarray, val: np.ndarray,
        cfg: TrainConfig) -> tuple[MultimodalClassifier, list[dict]]:
    """Train ``model`` on windows ``train``, early-stop on ``val``; return it with its best weights."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    x_train, x_val = prepare(model, ws, train), prepare(model, ws, val)
    if cfg.freeze_encoders:  # the encoders' embeddings, once; only the fusion and head learn
        model.encoders.eval().requires_grad_(False)
        x_train, x_val = _embed(model, x_train), _embed(model, x_val)
    else:
        for m, enc in model.encoders.items():  # scalers from the training windows only
            enc.fit_normalizer(x_train[m])
    lit = LitClassifier(model, class_weights(ws.y[train], len(ws.classes)), cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(_Prepared(x_train, ws.y[train]), batch_size=cfg.batch_size, shuffle=True, generator=g,
                          collate_fn=_as_batch)
    val_dl = DataLoader(_Prepared(x_val, ws.y[val]), batch_size=256, collate_fn=_as_batch)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=cfg.max_epochs, deterministic=True, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=cfg.progress,
        num_sanity_val_steps=0,
        callbacks=[L.pytorch.callbacks.EarlyStopping("val_loss", patience=cfg.patience, mode="min")])
    trainer.fit(lit, train_dl, val_dl)
    model.load_state_dict(lit.best_state)
    return model.eval(), lit.history


@torch.no_grad()
def predict_logits(model: MultimodalClassifier, ws: WindowSet, index: np.ndarray,
                   drop: tuple[str, ...] = (), batch_size: int = 256) -> np.ndarray:
    """Logits (len(index), n_classes); modalities in ``drop`` are left out, as if absent."""
    model.eval()
    keep = [m for m in model.modalities if m not in drop]
    out = []
    for s in range(0, len(index), batch_size):
        j = np.asarray(index[s:s + batch_size])
        out.append(model({m: torch.from_numpy(np.asarray(ws.inputs[m][j])) for m in keep}).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ws.classes)), np.float32)
