"""Intermediate fusion: ``forward(embeddings: Dict[str, Tensor], mask: Dict[str, Tensor]) -> Tensor``.

``embeddings[m]`` is (batch, dim_m); ``mask[m]`` is a (batch,) bool tensor, True where modality ``m`` is
present for that sample. An absent modality never enters as zeros posing as data: each module either
excludes it (masked softmax, attention key padding) or replaces it by a learned "missing" token and
tells the head that it is missing. Every sample must have at least one modality.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn

from symptomfuse.models.registry import register


def _check(embeddings: Dict[str, torch.Tensor], mask: Dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    if set(embeddings) != set(names) or set(mask) != set(names):
        raise ValueError(f"expected embeddings and mask for {names}, got {sorted(embeddings)} / {sorted(mask)}")
    present = torch.stack([mask[m].bool() for m in names], dim=1)  # (B, M)
    if not bool(present.any(dim=1).all()):
        raise ValueError("every sample needs at least one present modality")
    return present


class _Fusion(nn.Module):
    def __init__(self, dims: Dict[str, int], dim: int = 64):
        super().__init__()
        self.names = sorted(dims)
        self._config = {"dims": dict(dims), "dim": dim}
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, dim), nn.ReLU()) for m, d in dims.items()})
        self.out_dim = dim
        self.last_weights: torch.Tensor | None = None  # (B, M) modality weights of the last call, if any

    def config(self) -> dict:
        return {"name": self.registry_name, **self._config}

    def _tokens(self, embeddings):
        return torch.stack([self.proj[m](embeddings[m]) for m in self.names], dim=1)  # (B, M, dim)


@register("fusion", "concat")
class ConcatFusion(_Fusion):
    """Concatenate projected embeddings; an absent one is a learned missing token plus a 0 indicator."""

    def __init__(self, dims: Dict[str, int], dim: int = 64):
        super().__init__(dims, dim)
        self.missing = nn.Parameter(torch.zeros(len(self.names), dim))
        self.out = nn.Sequential(nn.Linear(len(self.names) * (dim + 1), dim), nn.ReLU())

    def forward(self, embeddings, mask):
        present = _check(embeddings, mask, self.names)
        tokens = torch.where(present[..., None], self._tokens(embeddings), self.missing.expand(len(present), -1, -1))
        flat = torch.cat([tokens, present[..., None].float()], dim=2).flatten(1)
        return self.out(flat)


@register("fusion", "gated")
class GatedFusion(_Fusion):
    """Weights per modality computed from the inputs (softmax over the present ones), then a weighted sum."""

    def __init__(self, dims: Dict[str, int], dim: int = 64):
        super().__init__(dims, dim)
        self.gate = nn.Linear(dim * len(self.names) + len(self.names), len(self.names))

    def forward(self, embeddings, mask):
        present = _check(embeddings, mask, self.names)
        tokens = self._tokens(embeddings) * present[..., None]  # absent tokens only feed the gate as 0 + flag
        scores = self.gate(torch.cat([tokens.flatten(1), present.float()], dim=1))
        w = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)
        self.last_weights = w.detach()
        return (w[..., None] * tokens).sum(dim=1)


@register("fusion", "attention")
class AttentionFusion(_Fusion):
    """Self-attention across modality tokens (absent ones are padding), then a mean over present tokens."""

    def __init__(self, dims: Dict[str, int], dim: int = 64, heads: int = 4, dropout: float = 0.1):
        super().__init__(dims, dim)
        self._config.update(heads=heads, dropout=dropout)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, embeddings, mask):
        present = _check(embeddings, mask, self.names)
        x = self._tokens(embeddings) + self.modality_embedding
        a, w = self.attn(x, x, x, key_padding_mask=~present, need_weights=True)
        x = self.norm1(x + a)
        x = self.norm2(x + self.ff(x))
        keep = present[..., None].float()
        self.last_weights = (w.mean(dim=1)).detach()
        return (x * keep).sum(dim=1) / keep.sum(dim=1)


@register("fusion", "uncertainty")
class UncertaintyFusion(_Fusion):
    """Each modality predicts its own log-variance; present modalities are weighted by their precision,
    so an unsure modality counts for less. With ``mc_samples`` > 1 at inference, the spread of the
    modality's projection under dropout (MC dropout) is added to its predicted variance."""

    def __init__(self, dims: Dict[str, int], dim: int = 64, dropout: float = 0.2, mc_samples: int = 1):
        super().__init__(dims, dim)
        self._config.update(dropout=dropout, mc_samples=mc_samples)
        self.drop = nn.Dropout(dropout)
        self.log_var = nn.ModuleDict({m: nn.Linear(dim, 1) for m in self.names})
        self.mc_samples = mc_samples

    def forward(self, embeddings, mask):
        present = _check(embeddings, mask, self.names)
        tokens = self._tokens(embeddings)
        log_var = torch.cat([self.log_var[m](tokens[:, i]) for i, m in enumerate(self.names)], dim=1)
        if not self.training and self.mc_samples > 1:
            draws = torch.stack([nn.functional.dropout(tokens, self.drop.p, training=True)
                                 for _ in range(self.mc_samples)])
            log_var = torch.logaddexp(log_var, torch.log(draws.var(dim=0).mean(dim=2) + 1e-8))
        w = torch.softmax((-log_var).masked_fill(~present, float("-inf")), dim=1)
        self.last_weights = w.detach()
        return (w[..., None] * self.drop(tokens)).sum(dim=1)
