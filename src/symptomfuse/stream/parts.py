"""A trained model split into the parts that live detection runs one at a time.

A ``MultimodalClassifier`` is cut into one encoder per modality (``encoder.M``: the modality's model
input -> embedding) and a head (``head``: the fusion module, if any, and the classification layer ->
logits). The engine then encodes only the modalities that passed the quality gate, and the fused head
sees the others as absent through its mask, exactly as ``MultimodalClassifier.forward`` does. Export
writes each part as safetensors and as ONNX; the detector runs the parts on torch or onnxruntime.

Part inputs are named, so both backends are fed the same way:
  encoder.M          M          (B, *input shape) of modality M, as its ``Modality.input_shape`` and
                                ``dtype`` say (e.g. audio: (B, n_mels, frames) float32 log-mel)
  head (fused)       mask (B, M) bool, emb_M (B, dim_M) float32 for every modality M (zeros where absent)
  head (single)      emb_M (B, dim_M) float32
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from symptomfuse.contract import FeatureContract
from symptomfuse.models.multimodal import MultimodalClassifier


class Head(nn.Module):
    """The fusion module (if any) and the classification layer of a model, fed embeddings."""

    def __init__(self, model: MultimodalClassifier):
        super().__init__()
        self.names = model.modalities
        self.fusion, self.head = model.fusion, model.head

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.fusion is None:
            return self.head(args[0])
        mask, embeddings = args[0], args[1:]
        return self.head(self.fusion(dict(zip(self.names, embeddings)),
                                     {m: mask[:, i] for i, m in enumerate(self.names)}))


@dataclass(frozen=True)
class Part:
    module: nn.Module
    inputs: list[str]  # names of the positional inputs, in order
    output: str
    prefixes: tuple[str, ...]  # state-dict keys of the whole model that belong to this part


def head_inputs(model: MultimodalClassifier) -> list[str]:
    embeddings = [f"emb_{m}" for m in model.modalities]
    return embeddings if model.fusion is None else ["mask", *embeddings]


def split(model: MultimodalClassifier) -> dict[str, Part]:
    """``{"encoder.M": Part, ..., "head": Part}`` sharing the model's modules (no copies)."""
    parts = {f"encoder.{m}": Part(enc, [m], "embedding", (f"encoders.{m}.",)) for m, enc in model.encoders.items()}
    parts["head"] = Part(Head(model).eval(), head_inputs(model), "logits", ("fusion.", "head."))
    return parts


def part_state(model: MultimodalClassifier, part: Part) -> dict[str, torch.Tensor]:
    """The whole model's state-dict entries that belong to ``part`` (full key names kept)."""
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(part.prefixes)}


def example_inputs(model: MultimodalClassifier, contract: FeatureContract, batch: int = 1) -> dict[str, np.ndarray]:
    """Zero inputs of the right shape and dtype for every input name of every part of ``model``."""
    out = {}
    for m in model.modalities:
        mod = contract.modality(m)
        out[m] = np.zeros((batch, *mod.input_shape()), mod.dtype)
    out["mask"] = np.ones((batch, len(model.modalities)), bool)
    for m, enc in model.encoders.items():
        out[f"emb_{m}"] = np.zeros((batch, enc.out_dim), np.float32)
    return out
