"""The Lightning module that trains a ``MultimodalClassifier``: the loss (cross-entropy weighted by class,
or the ordinal loss), augmentation and modality dropout drawn from its own generator, and the best
epoch's weights by validation loss, kept in memory. ``train.fit`` builds it and the Trainer."""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import torch
import torch.nn as nn

from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.train.fit import TrainConfig, ordinal_loss


class LitClassifier(L.LightningModule):
    def __init__(self, model: MultimodalClassifier, class_weights: torch.Tensor, cfg: TrainConfig,
                 augment: dict | None = None, values: np.ndarray | None = None):
        super().__init__()
        self.model, self.cfg, self.augment = model, cfg, augment or {}
        self.register_buffer("class_weights", class_weights)
        if cfg.loss == "ordinal" and values is None:
            raise ValueError("the ordinal loss needs the classes' values")
        self.values = torch.as_tensor(values, dtype=torch.float32) if cfg.loss == "ordinal" else None
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict] = []
        self._train_losses: list[float] = []

    def _loss(self, logits, y, reduction="mean"):
        # cross-entropy weights each sample by its class; the weighted mean divides by the summed weights
        if self.values is not None:
            w = self.class_weights
            total = ordinal_loss(logits, y, self.values, w, "sum")
            return total if reduction == "sum" else total / w[y].sum()
        return nn.functional.cross_entropy(logits, y, weight=self.class_weights, reduction=reduction)

    def _mask(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Modality dropout over the present modalities: each is dropped with probability
        ``modality_dropout``, and one present modality always stays."""
        mods = self.model.modalities
        if len(mods) == 1 or self.cfg.modality_dropout <= 0:
            return present
        avail = torch.stack([present[m] for m in mods], dim=1)
        keep = (torch.rand(avail.shape, generator=self.gen) >= self.cfg.modality_dropout) & avail
        none = ~keep.any(dim=1)
        if none.any():
            # one of the present modalities, uniformly (all present: the same draw as choosing any)
            pick = torch.randint(0, len(mods), (int(none.sum()),), generator=self.gen)
            rows = avail[none]
            if not bool(rows[torch.arange(len(pick)), pick].all()):
                order = torch.argsort(torch.rand(rows.shape, generator=self.gen) - rows.float(), dim=1)
                pick = torch.where(rows[torch.arange(len(pick)), pick], pick, order[:, 0])
            keep[none, pick] = True
        return {m: keep[:, i] for i, m in enumerate(mods)}

    def _logits(self, x, mask=None):
        if self.cfg.freeze_encoders:  # x holds embeddings
            return self.model.classify(x, mask)
        return self.model(x, mask, prepared=True)

    def on_fit_start(self):
        if self.trainer.world_size > 1:  # data-parallel: each process its own augmentation and dropout draws
            rank = self.trainer.global_rank
            self.gen.manual_seed(self.cfg.seed + 7919 * rank)
            torch.manual_seed(self.cfg.seed + 7919 * rank)

    def on_before_batch_transfer(self, batch, _):
        """Augmentation and modality dropout of a training batch, here on the CPU with this module's own
        generator, before the batch moves to its device (the same draws on a CPU and a GPU)."""
        if not self.trainer.training:
            return batch
        x, present, y = batch
        if self.cfg.augment and not self.cfg.freeze_encoders:
            x = {m: self.augment[m](v, self.gen) if self.augment.get(m) else v for m, v in x.items()}
        return x, self._mask(present), y

    def training_step(self, batch, _):
        x, mask, y = batch
        logits = self._logits(x, mask)
        loss = self._loss(logits, y)
        self._train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, _):
        x, present, y = batch
        loss = self._loss(self._logits(x, present), y, reduction="sum")
        # averaged over the processes of a data-parallel run, so that all of them stop at the same epoch
        self.log("val_loss", loss / len(y), on_epoch=True, batch_size=len(y), prog_bar=True,
                 sync_dist=self.trainer.world_size > 1)

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
