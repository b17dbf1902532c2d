"""Export trained models for live detection: safetensors + JSON and ONNX, each model split into parts.

An export folder holds everything the live engine needs, and nothing is read from the run afterwards:

  export.json                   ``ExportSpec``: the feature contract (classes, the positive class, window
                                and feature settings), which model is the primary (fused) one, which
                                single-modality model serves each modality, each model's temperature
                                and its parts' files, and where the models came from (run, fold, the
                                fold's test people)
  MODEL/config.json             the model's config (``multimodal.load`` format), classes, temperature,
                                feature settings
  MODEL/encoder.M.safetensors   modality M's encoder, its train-fitted scaler included
  MODEL/encoder.M.onnx
  MODEL/head.safetensors        fusion module (if any) + classification layer
  MODEL/head.onnx
  MODEL/ood.safetensors         a single-modality model's embedding density (``models.ood``): how far an
                                input lies from the training data

Each ONNX file holds its weights (no external data file beside it, which export.json would not hash and
a copy could lose). Every part goes to ONNX through the TorchScript tracer (``dynamo=False``):
- the fusion modules check that every sample has a present modality with a data-dependent ``if``, which
  ``torch.export`` cannot trace; the tracer evaluates it once on the example (all present), and the engine
  never feeds a sample with nothing present;
- the encoders export in about 0.1 s each with the tracer, against about 2 s each through ``torch.export``
  (``dynamo=True``), with the same operators and the same speed in onnxruntime. The parity tests hold both
  backends to the model's own output. (torch marks the tracer as deprecated; torch is pinned.)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from tqdm import tqdm

from symptomfuse import NOTICE
from symptomfuse.atomic import atomic_folder, atomic_path, atomic_write_text, check_not_a_file
from symptomfuse.artifacts import RunInfo
from symptomfuse.contract import FeatureContract
from symptomfuse.evaluate.predictions import cross_validated_auc, load_predictions
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.models.multimodal import load as load_model
from symptomfuse.models.ood import EmbeddingDensity
from symptomfuse.stream.parts import example_inputs, part_state, split
from symptomfuse.stream.untrusted import check_config, exact_keys, sha256
from symptomfuse.errors import UsageError

EXPORT_FILE = "export.json"
FORMAT = "symptomfuse-export/2"


@dataclass
class ExportSpec:
    """export.json: what the live engine needs, and nothing is read from the run afterwards."""

    contract: FeatureContract
    primary: str
    singles: dict  # modality -> the single-modality model giving its own prediction
    models: dict  # name -> {"modalities", "fusion", "temperature", "config", "parts", "embedding_dims"}
    onnx: bool
    source: dict
    notice: str = NOTICE
    format: str = FORMAT

    @property
    def classes(self) -> list[str]:
        return list(self.contract.classes)

    def live_info(self) -> dict:
        """Per modality, for the live page: what its quality indicator is called and what it can say."""
        return {m: {"label": mod.live_label or m, "qualities": list(mod.live_qualities)}
                for m, mod in ((m, self.contract.modality(m)) for m in self.modalities())}

    def modalities(self) -> list[str]:
        return list(dict.fromkeys([*self.models[self.primary]["modalities"], *self.singles]))

    def to_json(self) -> dict:
        return {"format": self.format, "notice": self.notice, "contract": self.contract.to_json(),
                "classes": self.classes, "positive_class": self.contract.positive, "primary": self.primary,
                "singles": self.singles, "models": self.models, "onnx": self.onnx, "source": self.source,
                "live": self.live_info()}

    @classmethod
    def from_json(cls, data: dict) -> "ExportSpec":
        """Rebuild and check export.json (untrusted: ``stream.untrusted``); every problem is a UsageError."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise UsageError(f"export.json has format {got!r}; this version reads {FORMAT!r}: export again")
        exact_keys(data, {"format", "notice", "contract", "classes", "positive_class", "primary", "singles", "models",
                          "onnx", "source", "live"}, set(), "export.json")
        contract = FeatureContract.from_json(data["contract"])
        for m in contract.modalities:  # before anything is allocated for a window of it
            shape = contract.modality(m).input_shape()
            if int(np.prod(shape, dtype=np.float64)) > 20_000_000:
                raise UsageError(f"export.json: a window of {m} would be {shape}: out of bounds")
        models, singles = data["models"], data["singles"]
        if not isinstance(models, dict) or not models or len(models) > 64:
            raise UsageError("export.json: models must be an object of 1 to 64 models")
        if data["primary"] not in models:
            raise UsageError(f"export.json: the primary model {data['primary']!r} is not among the models")
        if not isinstance(singles, dict) or any(m not in contract.modalities or n not in models
                                                for m, n in singles.items()):
            raise UsageError("export.json: singles must map the contract's modalities to exported models")
        for name, entry in models.items():
            where = f"export.json models.{name}"
            exact_keys(entry, {"modalities", "fusion", "temperature", "config", "parts", "embedding_dims", "sha256"},
                       {"ood"}, where)
            check_config({k: v for k, v in entry.items() if k != "sha256"}, where)
            if not isinstance(entry["modalities"], list) or not entry["modalities"] or any(
                    m not in contract.modalities for m in entry["modalities"]):
                raise UsageError(f"{where}: modalities must be some of the contract's {list(contract.modalities)}")
            t = entry["temperature"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.01 <= t <= 100:
                raise UsageError(f"{where}: temperature must be a number between 0.01 and 100, got {t!r}")
            dims = entry["embedding_dims"]
            if not isinstance(dims, dict) or set(dims) != set(entry["modalities"]) or any(
                    isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 4096 for d in dims.values()):
                raise UsageError(f"{where}: embedding_dims must give 1-4096 for each of its modalities")
            if not isinstance(entry["parts"], dict) or not isinstance(entry["sha256"], dict):
                raise UsageError(f"{where}: parts and sha256 must be objects")
            expected = {f"encoder.{m}" for m in entry["modalities"]} | {"head"}
            if set(entry["parts"]) != expected:
                raise UsageError(f"{where}: parts must be {sorted(expected)} (an encoder per modality and the head), "
                                 f"got {sorted(entry['parts'])}")
            for part, files in entry["parts"].items():
                exact_keys(files, {"safetensors", "inputs", "output"}, {"onnx"}, f"{where}.parts.{part}")
        return cls(contract, data["primary"], singles, models, bool(data["onnx"]), data.get("source", {}))


OPSET = 18


def _rewrite_small_matmuls(path: Path) -> None:
    """Replace ``MatMul(x, w)`` with a constant vector ``w`` of a few entries (such as RGB -> luma weights)
    by ``ReduceSum(x * w, axis -1)``: the same numbers, but onnxruntime's MatMul is very slow with an inner
    dimension of 3 (about 50 ms against 1 ms for a window of frames)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    def small_vector(t) -> bool:
        return len(t.dims) == 1 and t.dims[0] <= 8

    # the vector is an initializer, or (from the TorchScript tracer) a Constant node's output
    vectors = {i.name for i in graph.initializer if small_vector(i)}
    vectors |= {n.output[0] for n in graph.node if n.op_type == "Constant"
                and any(a.name == "value" and small_vector(a.t) for a in n.attribute)}
    nodes, changed = [], False
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in vectors:
            axes = f"{node.name}_axes"
            graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), axes))
            nodes.append(onnx.helper.make_node("Mul", list(node.input), [f"{node.name}_product"], name=f"{node.name}_mul"))
            nodes.append(onnx.helper.make_node("ReduceSum", [f"{node.name}_product", axes], list(node.output),
                                               name=f"{node.name}_sum", keepdims=0))
            changed = True
        else:
            nodes.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))


def _export_onnx(part_name: str, part, model: MultimodalClassifier, features: FeatureContract, path: Path) -> None:
    """One part through the TorchScript tracer (see the module's docstring for why not ``torch.export``)."""
    example = example_inputs(model, features)
    args = tuple(torch.from_numpy(example[name]) for name in part.inputs)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # tracer and deprecation warnings; the parity test is the check
        quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes
        try:
            torch.onnx.export(part.module, args, str(tmp), input_names=part.inputs, output_names=[part.output],
                              dynamic_axes={n: {0: "batch"} for n in [*part.inputs, part.output]},
                              opset_version=OPSET, dynamo=False, verbose=False,
                              external_data=False)  # the weights inside the .onnx, which export.json hashes
        finally:
            quiet.setLevel(level)
        _rewrite_small_matmuls(tmp)


def export_model(model: MultimodalClassifier, name: str, temperature: float, features: FeatureContract,
                 out: Path, onnx: bool = True, density: EmbeddingDensity | None = None) -> dict:
    """Write one model's parts into ``out/name/`` (and a single-modality model's embedding density, for
    the live engine's "unlike the training data" warnings); return its entry for export.json."""
    model = model.eval()
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    for part_name, part in split(model).items():
        files = {"safetensors": f"{name}/{part_name}.safetensors"}
        with atomic_path(Path(out) / files["safetensors"]) as tmp:
            save_file(part_state(model, part), str(tmp))
        if onnx:
            files["onnx"] = f"{name}/{part_name}.onnx"
            _export_onnx(part_name, part, model, features, Path(out) / files["onnx"])
        parts[part_name] = {**files, "inputs": part.inputs, "output": part.output}
    entry = {"modalities": model.modalities, "fusion": (model.config()["fusion"] or {}).get("name"),
             "temperature": float(temperature), "config": f"{name}/config.json", "parts": parts,
             "embedding_dims": {m: int(e.out_dim) for m, e in model.encoders.items()}}
    if density is not None:
        density.save(folder / "ood.safetensors")
        entry["ood"] = f"{name}/ood.safetensors"
    atomic_write_text(folder / "config.json", json.dumps({
        "model": model.config(), "classes": list(features.classes), "temperature": float(temperature),
        "notice": NOTICE}, indent=1))
    files = [entry["config"], *(f for p in parts.values() for k, f in p.items() if k in ("safetensors", "onnx"))]
    entry["sha256"] = {f: sha256(Path(out) / f) for f in files + ([entry["ood"]] if "ood" in entry else [])}
    return entry


def export_models(models: dict[str, tuple[MultimodalClassifier, float]], primary: str, contract: FeatureContract,
                  out: Path, source: dict | None = None, onnx: bool = True, progress: bool = False,
                  densities: dict[str, EmbeddingDensity] | None = None) -> ExportSpec:
    """Export ``{name: (model, temperature)}``; ``primary`` is the model whose output is the fused result;
    ``densities`` are single-modality models' embedding densities (``models.ood``), by model name.

    Every single-modality model among them serves its modality's own prediction. The folder is written
    beside ``out`` and takes its place when complete (``atomic_folder``): an earlier export there is
    replaced whole, never mixed with this one (its stale files gone, its export.json never naming the new
    files' hashes); a folder that is not an export is refused, so a person's own files are never mixed in
    or overwritten.
    """
    if primary not in models:
        raise UsageError(f"primary model {primary!r} is not among the exported models {sorted(models)}")
    out = Path(out)
    check_not_a_file(out)
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_FILE).is_file():
        raise UsageError(f"{out} is not empty and is not an exported model folder (no {EXPORT_FILE}): choose a new "
                         "or empty --out")
    entries = {}
    with atomic_folder(out) as folder:
        for name, (model, temperature) in tqdm(models.items(), desc="export", unit="model", disable=not progress):
            entries[name] = export_model(model, name, temperature, contract, folder, onnx, (densities or {}).get(name))
        singles = {e["modalities"][0]: name for name, e in entries.items() if e["fusion"] is None}
        spec = ExportSpec(contract, primary, singles, entries, onnx, source or {})
        atomic_write_text(folder / EXPORT_FILE, json.dumps(spec.to_json(), indent=1, default=float))
    return spec


def _best_model(info: RunInfo, trained: list[str], auc: dict[str, float]) -> str:
    """The intermediate fusion with the best cross-validated ROC AUC (else the first fused model, else the
    first trained model)."""
    fused = [n for n in trained if info.spec(n).kind == "fused"]
    candidates = fused or trained
    return max(candidates, key=lambda n: auc[n] if np.isfinite(auc.get(n, np.nan)) else -np.inf)


def export_run(run: Path, out: Path, model: str | None = None, fold: int | None = None, person: str | None = None,
               onnx: bool = True, progress: bool = True) -> ExportSpec:
    """Export one fold of a ``symptomfuse train`` run: the chosen model (default: the best intermediate
    fusion; ``chosen_on_val``: the network it chose in that fold on the fold's validation people) and every
    single-modality model of the same fold. Everything comes from the run folder.

    ``person`` picks the fold in which that person was a test person, so that streaming their recordings
    is a fair, held-out test; ``fold`` picks a fold directly (default 0).
    """
    run = Path(run)
    info, samples, preds = load_predictions(run)
    if fold is not None and person is not None:
        raise UsageError("give --fold or --person, not both")
    n_folds = int(info.protocol["folds"])
    if person is not None:
        folds = samples.loc[samples.person_id == person, "fold"].unique()
        if len(folds) == 0:
            raise UsageError(f"person {person!r} is not in this run; people: "
                             f"{', '.join(sorted(samples.person_id.unique())[:12])}, ...")
        fold = int(folds[0]) if folds[0] >= 0 else 0  # a --held-out person is held out of every fold
    fold = 0 if fold is None else int(fold)
    if not 0 <= fold < n_folds:
        raise UsageError(f"--fold must be between 0 and {n_folds - 1}, got {fold}")

    trained = [n for n, m in info.models.items() if m["spec"].trained]
    top, auc = cross_validated_auc(info, samples, preds, trained)  # from the predictions, not metrics.json
    model = model or _best_model(info, trained, auc)
    chose = None
    if model in info.models and info.spec(model).kind == "chosen":  # the model it chose in this fold
        chose = model
        picked = [r.get("chosen") for r in info.models[model]["folds"] if r["fold"] == fold]
        if len(picked) != 1 or picked[0] not in info.models:
            raise UsageError(f"run.json does not say which model {model} chose in fold {fold}: the run folder is "
                             "damaged; train again")
        model = picked[0]
        if model not in trained:
            raise UsageError(f"{chose} chose {model} in fold {fold}, a baseline, which is not exported; export a "
                             f"network ({', '.join(trained)}), or another fold (--fold, --person)")
    if model not in trained:
        other = sorted(set(info.models) - set(trained))
        raise UsageError(f"cannot export {model!r}: choose a trained network ({', '.join(trained)})"
                         + (f"; late fusions and baselines ({', '.join(other)}) are not exported" if other else ""))
    names = [model] + [n for n in trained if info.spec(n).kind == "single" and n != model]

    def temperature(name):
        """The temperature fold ``fold`` of model ``name`` was calibrated with (run.json, whose temperatures
        ``RunInfo.from_json`` checked: positive numbers, where there is one)."""
        got = [r.get("temperature") for r in info.models[name]["folds"] if r["fold"] == fold]
        if len(got) != 1 or got[0] is None:
            raise UsageError(f"run.json holds no usable temperature for {name}, fold {fold} ({got}): the run folder "
                             "is damaged; train again")
        return float(got[0])

    def density(path):
        try:
            return EmbeddingDensity.load(path)
        except (OSError, ValueError, SafetensorError) as exc:
            raise UsageError(f"{path} is not a usable embedding density ({exc}): the run folder is damaged; train "
                             "again") from None

    models = {n: (load_model(run / "models" / n / f"fold{fold}"), temperature(n)) for n in names}
    densities = {n: density(path) for n in names
                 if (path := run / "models" / n / f"fold{fold}" / "ood.safetensors").exists()}
    test_people = sorted(samples.loc[samples.fold == fold, "person_id"].unique().tolist())
    source = {"run": str(run.resolve()), "run_id": info.run_id, "fold": fold, "person": person,
              "test_people": test_people, "held_out": info.protocol.get("held_out", [])}
    if chose is not None:  # what was asked for, and what it stood for in this fold
        source["chosen_by"] = {"model": chose, "chose": model}
    # every trained model's figure, the chosen one's among them
    source["cross_validated_roc_auc"] = {n: auc[n] if np.isfinite(auc[n]) else None for n in trained}
    source["roc_auc_level"] = top
    return export_models(models, model, info.contract, out, source, onnx, progress, densities)
