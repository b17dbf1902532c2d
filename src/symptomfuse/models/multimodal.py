"""The multimodal classifier: encoders in a ModuleDict keyed by modality, a fusion module, a head.

Saved as safetensors (weights, scalers included) plus a JSON config from which ``load`` rebuilds it;
nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from symptomfuse.atomic import atomic_path, atomic_write_text
from symptomfuse.fusion import modules as _fusion_modules  # noqa: F401  (registers the fusion modules)
from symptomfuse.models import encoders as _encoders  # noqa: F401  (registers the encoders)
from symptomfuse.errors import UsageError
from symptomfuse.models.registry import build


class MultimodalClassifier(nn.Module):
    def __init__(self, encoders: Dict[str, dict], fusion: dict | None, n_classes: int, dropout: float = 0.2,
                 init_seed: int | None = None):
        """``init_seed`` makes the initial weights reproducible without touching the global RNG."""
        super().__init__()
        if fusion is None and len(encoders) != 1:
            raise ValueError("a model without fusion takes exactly one encoder")
        self._config = {"encoders": encoders, "fusion": fusion, "n_classes": n_classes, "dropout": dropout,
                        "init_seed": init_seed}
        with torch.random.fork_rng(devices=[]):
            if init_seed is not None:
                torch.manual_seed(init_seed)
            self.encoders = nn.ModuleDict({m: build("encoder", cfg) for m, cfg in encoders.items()})
            dims = {m: e.out_dim for m, e in self.encoders.items()}
            self.fusion = build("fusion", {**fusion, "dims": dims}) if fusion is not None else None
            width = self.fusion.out_dim if self.fusion is not None else next(iter(dims.values()))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def embed(self, inputs: Dict[str, torch.Tensor], prepared: bool = False) -> Dict[str, torch.Tensor]:
        """Each given modality's embedding (batch, dim). With ``prepared``, inputs have already been through
        each encoder's ``prepare`` (as in training)."""
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise ValueError(f"inputs {sorted(unknown)} are not among this model's modalities {self.modalities}")
        return {m: self.encoders[m].forward_prepared(x) if prepared else self.encoders[m](x)
                for m, x in inputs.items()}

    def classify(self, embeddings: Dict[str, torch.Tensor], mask: Dict[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        """Logits (batch, n_classes) from the embeddings of any subset of the modalities; ``mask`` marks, per
        sample, which given embeddings are real (default: all of them)."""
        given = [m for m in self.modalities if m in embeddings]
        if not given:
            raise ValueError(f"no input for any of {self.modalities}")
        if self.fusion is None:
            return self.head(embeddings[given[0]])
        batch = len(embeddings[given[0]])
        mask = mask or {}
        emb, full_mask = {}, {}
        for m, enc in self.encoders.items():
            if m in given:
                emb[m] = embeddings[m]
                full_mask[m] = mask[m].bool() if m in mask else torch.ones(batch, dtype=torch.bool)
            else:  # never encoded: a placeholder the fusion ignores because the mask says absent
                emb[m] = torch.zeros(batch, enc.out_dim)
                full_mask[m] = torch.zeros(batch, dtype=torch.bool)
        return self.head(self.fusion(emb, full_mask))

    def forward(self, inputs: Dict[str, torch.Tensor], mask: Dict[str, torch.Tensor] | None = None,
                prepared: bool = False) -> torch.Tensor:
        """Logits (batch, n_classes). ``inputs`` may hold any subset of the modalities (features as the
        feature functions give them, or ``prepared``); ``mask`` as in ``classify``."""
        return self.classify(self.embed(inputs, prepared), mask)

    def config(self) -> dict:
        return json.loads(json.dumps(self._config))


def save(model: MultimodalClassifier, folder: Path, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(folder / "config.json", json.dumps({"model": model.config(), **(extra or {})}, indent=1))


def load(folder: Path) -> MultimodalClassifier:
    """A model ``save`` wrote (a run's model-fold); a folder whose files are gone, damaged or do not fit
    each other is refused in one line. (An exported model that someone hands over is read by
    ``stream.detector``, which checks more.)"""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())["model"]
        model = MultimodalClassifier(**cfg)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise UsageError(f"{folder} holds no model this version can read ({type(exc).__name__}: {exc}): the run "
                         "folder is damaged or from another version; train again") from None
    return model.eval()


def registered_class(kind: str, name: str):
    """The class registered as ``name`` (for checking keyword arguments before building)."""
    from symptomfuse.models.registry import _REGISTRY

    if name not in _REGISTRY[kind]:
        from symptomfuse.errors import UsageError

        raise UsageError(f"unknown {kind} {name!r}; available: {', '.join(sorted(_REGISTRY[kind]))}")
    return _REGISTRY[kind][name]
