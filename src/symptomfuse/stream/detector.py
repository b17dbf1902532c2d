"""The models of an export folder, run on torch or onnxruntime: model inputs in, calibrated probabilities out.

``Detector.predict`` takes a batch of model inputs for any subset of modalities and returns:
  * per modality, the probabilities of that modality's own model (its single-modality model; or, when
    the export has none, the primary model fed that modality alone);
  * fused, the primary model's probabilities over the modalities it has among those given;
  * unlike, per modality whose own model was exported with an embedding density (``models.ood``), how far
    each input lies from the training data (above 1: unlike it).
Probabilities are temperature-calibrated with the temperature fitted on the fold's validation people.

Both backends run the same parts (see ``parts``): on torch, modules rebuilt from the safetensors + JSON;
on onnxruntime, the ONNX files. Their outputs agree within 1e-4 (tested).

A Detector keeps no state between calls, so several engines on several threads may share one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from symptomfuse.evaluate.calibration import calibrated
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.models.ood import EmbeddingDensity
from symptomfuse.stream.export import EXPORT_FILE, ExportSpec
from symptomfuse.stream.parts import split
from symptomfuse.stream.untrusted import check_config, checked_bytes, checked_file
from symptomfuse.errors import UsageError

BACKENDS = ("torch", "onnx")


def limit_threads(n: int = 1) -> None:
    """Process-wide: torch and numpy's BLAS use at most ``n`` threads. Call it in a live process. The work
    of one update is small, and BLAS threads left idle between updates spin: with two BLAS threads a
    real-time stream used about 3.5 times the CPU of one with one thread (0.14 against 0.04 CPU seconds
    per media second, on 2 cores)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


class _TorchRunner:
    def __init__(self, module: torch.nn.Module, inputs: list[str]):
        self.module, self.inputs = module, inputs

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.inputs)).numpy()


class _OnnxRunner:
    def __init__(self, model: bytes, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads burn no CPU
        # from the bytes that were hashed, not a path: onnxruntime then reads nothing else (an ONNX file can
        # name external data files, which export.json does not hash), and what runs is what was checked
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: np.ascontiguousarray(feeds[n]) for n in self.inputs})[0]


class ExportedModel:
    """One exported model: its encoders and head as runnable parts, and its temperature."""

    def __init__(self, folder: Path, name: str, entry: dict, backend: str, threads: int | None):
        self.name = name
        self.modalities: list[str] = entry["modalities"]
        self.fused = entry["fusion"] is not None
        self.temperature = float(entry["temperature"])
        self.dims = entry["embedding_dims"]
        hashes = entry["sha256"]

        def file(rel, what):  # inside the folder, and the file that was exported
            return checked_file(folder, rel, hashes, f"{name}: {what}")

        self.weights = {n: file(p.get("safetensors"), f"part {n}") for n, p in entry["parts"].items()}
        self.density = None  # a single-modality model's embedding density, when exported with one
        if entry.get("ood") and not self.fused:
            path = file(entry["ood"], "ood")
            try:
                self.density = EmbeddingDensity.load(path, self.dims[self.modalities[0]])
            except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear line
                raise UsageError(f"{folder}: {entry['ood']} is not a usable embedding density: {exc}") from None
        config = file(entry["config"], "config")
        try:
            cfg = json.loads(config.read_text())["model"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{folder}: {entry['config']} is not a model config: {exc}") from None
        check_config(cfg, f"{entry['config']}")
        try:
            model = MultimodalClassifier(**cfg)
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"{folder}: {entry['config']} does not describe a model this version builds: {exc}") from None
        if list(model.modalities) != list(self.modalities) or any(
                int(e.out_dim) != self.dims[m] for m, e in model.encoders.items()):
            raise UsageError(f"{folder}: {entry['config']} does not match export.json's modalities and dims")
        if backend == "torch":
            state = {}
            for n, path in self.weights.items():
                try:
                    state.update(load_file(str(path)))
                except Exception as exc:  # noqa: BLE001
                    raise UsageError(f"{folder}: {path.name} of {name} is not a safetensors file: {exc}") from None
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0][:200]
                raise UsageError(f"{folder}: the weights of {name} do not fit its config: {first}") from None
            model.eval()
            self.parts = {n: _TorchRunner(p.module, p.inputs) for n, p in split(model).items()}
        else:
            missing = [n for n, p in entry["parts"].items() if "onnx" not in p]
            if missing:
                raise UsageError(f"{name} was exported without ONNX files: export again without --no-onnx, "
                                 "or use backend='torch'")
            self.parts = {}
            for n, p in entry["parts"].items():
                onnx_bytes = checked_bytes(folder, p["onnx"], hashes, f"{name}: part {n}")
                try:
                    self.parts[n] = _OnnxRunner(onnx_bytes, threads)
                except Exception as exc:  # noqa: BLE001
                    raise UsageError(f"{folder}: {p['onnx']} is not a usable ONNX model: "
                                     f"{str(exc).splitlines()[0][:200]}") from None

    def embed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embeddings of the modalities of this model present in ``inputs``."""
        return {m: self.parts[f"encoder.{m}"]({m: inputs[m]}) for m in self.modalities if m in inputs}

    def logits(self, inputs: dict[str, np.ndarray], embeddings: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Logits for the batch, from the modalities of this model present in ``inputs`` (at least one).
        ``embeddings`` already computed by this model's encoders (or identical ones) are not computed again."""
        embeddings = dict(embeddings or {})
        embeddings.update(self.embed({m: x for m, x in inputs.items() if m not in embeddings}))
        present = [m for m in self.modalities if m in embeddings]
        if not present:
            raise UsageError(f"{self.name} needs one of {self.modalities}, got {sorted(inputs)}")
        batch = len(embeddings[present[0]])
        feeds = {f"emb_{m}": embeddings[m] for m in present}
        if self.fused:
            for m in self.modalities:  # absent: a placeholder the fusion ignores, as in MultimodalClassifier
                feeds.setdefault(f"emb_{m}", np.zeros((batch, self.dims[m]), np.float32))
            feeds["mask"] = np.tile([m in present for m in self.modalities], (batch, 1))
        return self.parts["head"](feeds)

    def probabilities(self, inputs: dict[str, np.ndarray], embeddings: dict[str, np.ndarray] | None = None
                      ) -> np.ndarray:
        return calibrated(self.logits(inputs, embeddings), self.temperature)


@dataclass
class Prediction:
    modalities: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (B, K) probabilities
    fused: np.ndarray | None = None  # (B, K), or None when the primary model had none of its modalities
    fused_modalities: list[str] = field(default_factory=list)
    unlike: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (B,) distance / threshold
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # the primary's encoders: fused modality -> (B, D)


class Detector:
    """Load with ``Detector.load(export_dir, backend="torch" | "onnx")``; see the module docstring."""

    def __init__(self, spec: ExportSpec, models: dict[str, ExportedModel], backend: str, folder: Path):
        self.spec, self.models, self.backend, self.folder = spec, models, backend, folder
        self.model_id = ""  # set by load: "sha256:" and the first 16 hex digits of export.json's hash
        self.contract = spec.contract
        self.classes: list[str] = spec.classes
        self.positive_class: str | None = spec.contract.positive
        self.primary = models[spec.primary]
        self.singles = {m: models[name] for m, name in spec.singles.items()}
        self.modalities = list(dict.fromkeys([*self.primary.modalities, *self.singles]))
        # modalities whose own model encodes them exactly as the primary does (the same model, or the same
        # encoder weights, as fused models trained on frozen encoders have): encoded once per prediction
        self.shared = [m for m in self.primary.modalities if (own := self.model_for(m)) is self.primary
                       or own.weights[f"encoder.{m}"].read_bytes()
                       == self.primary.weights[f"encoder.{m}"].read_bytes()]

    @classmethod
    def load(cls, export_dir: str | Path, backend: str = "torch", threads: int | None = 1) -> "Detector":
        """Load an export folder. ``threads`` is onnxruntime's threads per model part (None: one per core;
        the parts are small, and one thread uses the least CPU per update). Torch's threads are
        process-wide: set them with ``torch.set_num_threads``."""
        folder = Path(export_dir)
        if backend not in BACKENDS:
            raise UsageError(f"backend must be one of {BACKENDS}, got {backend!r}")
        path = folder / EXPORT_FILE
        if not path.exists():
            raise FileNotFoundError(f"{folder} is not an export folder (no {EXPORT_FILE}): "
                                    "run `symptomfuse export RUN --out FOLDER` first")
        if path.stat().st_size > 10_000_000:
            raise UsageError(f"{path}: {path.stat().st_size} bytes is too large for an export.json")
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        spec = ExportSpec.from_json(data)
        models = {name: ExportedModel(folder, name, entry, backend, threads) for name, entry in spec.models.items()}
        detector = cls(spec, models, backend, folder)
        # which model: export.json records every part's SHA-256, so its own hash names the whole export
        detector.model_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
        try:
            detector.predict(detector.example_inputs())  # warm up, so that the first live update is not slow
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an ONNX graph whose shapes do not fit the contract
            raise UsageError(f"{folder}: the exported models do not run on the contract's inputs: "
                             f"{str(exc).splitlines()[0][:200]}") from None
        return detector

    def example_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Zero model inputs of the right shapes and dtypes for every modality."""
        out = {}
        for m in self.modalities:
            mod = self.contract.modality(m)
            out[m] = np.zeros((batch, *mod.input_shape()), mod.dtype)
        return out

    def model_for(self, modality: str) -> ExportedModel | None:
        """The model that gives ``modality``'s own prediction, if any."""
        if modality in self.singles:
            return self.singles[modality]
        return self.primary if modality in self.primary.modalities else None

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        """Probabilities for a batch of model inputs (any subset of ``self.modalities``)."""
        out, shared = Prediction(), {}
        for m, x in inputs.items():
            model = self.model_for(m)
            if model is not None:
                embedding = model.embed({m: x})
                out.modalities[m] = model.probabilities({m: x}, embedding)
                if model.density is not None:
                    out.unlike[m] = model.density.score(embedding[m])
                if m in self.shared:
                    shared.update(embedding)
        out.fused_modalities = [m for m in self.primary.modalities if m in inputs]
        if out.fused_modalities:
            out.embeddings = {**shared, **self.primary.embed({m: x for m, x in inputs.items() if m not in shared})}
            out.fused = self.primary.probabilities(inputs, out.embeddings)
        return out

    def fused_from_embeddings(self, embeddings: dict[str, np.ndarray]) -> np.ndarray | None:
        """The primary model's calibrated probabilities from its encoders' embeddings (``Prediction.embeddings``,
        or their means over windows: a guided session pools each modality's windows as ``train --unit
        person`` does); modalities missing from ``embeddings`` are masked. None when none is given."""
        if not any(m in embeddings for m in self.primary.modalities):
            return None
        return self.primary.probabilities({}, embeddings)
