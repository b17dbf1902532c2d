"""A guided session: a person is walked through the tasks of a model (``symptomfuse.tasks``: say "aaah",
smile, tap each hand) on a live stream, and gets one result for the whole session.

Timeline, on the engine's media clock, from ``start``: each step has ``prepare_s`` to get ready, then its
task's seconds of recording (at least a window and two updates, so that a few windows fit wholly inside
it). A window that lies wholly inside a step's recording belongs to that step, and only the step's
modalities are taken from it: the voice task's sound, the tapping task's hand. Each of those that passed
its gate gives the primary model's embedding of it and its own model's probability.

The result (``SessionResult``), once the media clock has passed the last step (and the engine's wait):
* fused: the primary model on each modality's embedding averaged over its usable windows (as ``train
  --unit person`` pools a person's windows; a modality with none is masked), with a 90% interval from
  resampling each modality's windows (bootstrap), the uncertainty (normalised entropy), and whether it
  abstains: no task gave a usable window, the result is within ``abstain_band`` of chance, or most of a
  fused modality's usable windows were unlike the training data;
* per step: its windows, how many were usable per modality and why the others were not, each own
  model's mean probability, and the step's contribution: the fused probability minus the fused
  probability without that step's windows.

Used by the engine's listener hook (``StreamEngine.listeners``) on the engine's thread: ``on_window`` per
window, ``advance(t)`` after media up to ``t`` was pushed (it returns the guide's messages: the state
when a phase changes, then the result once).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from symptomfuse import NOTICE
from symptomfuse.errors import UsageError
from symptomfuse.evaluate.metrics import abstains
from symptomfuse.stream.detector import Detector, Prediction
from symptomfuse.stream.engine import rating, shown_p, uncertainty
from symptomfuse.tasks import Step, plan

RESULT_SCHEMA = "symptomfuse-guided/1"
INTERVAL = (5.0, 95.0)  # percentiles of the bootstrap: a 90% interval


@dataclass(frozen=True)
class Span:
    prepare_from: float
    record_from: float
    record_to: float


@dataclass
class GuideState:
    """Where the session is at media time ``t``: the step, its phase and the seconds left in that phase."""

    step: int  # index into the steps; len(steps) once they are all done
    phase: str  # "prepare", "record", "finishing" (waiting for the last windows) or "done"
    remaining_s: float
    t: float

    def to_json(self) -> dict:
        return {**asdict(self), "remaining_s": round(self.remaining_s, 2), "t": round(self.t, 3)}


@dataclass
class _Collected:
    """What one step's windows gave."""

    windows: int = 0
    quality: dict = field(default_factory=dict)  # modality -> Counter of gate answers
    embeddings: dict = field(default_factory=dict)  # fused modality -> list of (D,) embeddings
    probs: dict = field(default_factory=dict)  # modality -> list of (K,) own-model probabilities
    unlike: Counter = field(default_factory=Counter)  # modality -> usable windows unlike the training data


    def strange(self) -> list[str]:
        """The modalities whose usable windows were mostly unlike the training data (one odd window among
        many does not make a session's input unlike it)."""
        return sorted(m for m, n in self.unlike.items() if n > 0.5 * self.quality[m]["ok"])


@dataclass
class SessionResult:
    fused: dict  # p, label, probs, interval, uncertainty, abstain, why, modalities
    steps: list  # per step: name, title, windows, usable, quality, p, contribution, unlike_training
    model: str
    notice: str = NOTICE
    schema: str = RESULT_SCHEMA

    def to_json(self) -> dict:
        return asdict(self)


class GuidedSession:
    def __init__(self, detector: Detector, start: float, *, window_s: float | None = None,
                 update_every: float = 0.5, prepare_s: float = 3.0, settle_s: float = 0.5,
                 abstain_band: float = 0.1, steps: list[Step] | None = None, n_boot: int = 200, seed: int = 0):
        """``start``: media time the first step's preparation begins. ``settle_s``: how long after the last
        step the result waits for its last windows (the engine's ``max_wait_s``)."""
        self.detector = detector
        self.steps = steps if steps is not None else plan(
            {m: detector.contract.modality(m) for m in detector.modalities})
        if not self.steps:
            raise UsageError(f"this model's modalities ({', '.join(detector.modalities)}) have no guided tasks: "
                             "a guided session needs a voice, face or hand modality")
        self.window_s = window_s if window_s is not None else detector.contract.timing.window_s
        self.abstain_band, self.n_boot, self.seed, self.settle_s = abstain_band, n_boot, seed, settle_s
        shortest = self.window_s + 2 * update_every
        self.spans, t = [], float(start)
        for step in self.steps:
            record = max(step.task.seconds, shortest)
            self.spans.append(Span(t, t + prepare_s, t + prepare_s + record))
            t += prepare_s + record
        self.end_t = t
        self.collected = [_Collected() for _ in self.steps]
        self.result: SessionResult | None = None
        self._last: tuple[int, str] | None = None

    # ---- timeline ----------------------------------------------------------------------------------------

    def state(self, t: float) -> GuideState:
        if self.result is not None:  # done, also when the stream ended before the last step
            return GuideState(len(self.steps), "done", 0.0, t)
        for i, span in enumerate(self.spans):
            if t < span.record_from:
                return GuideState(i, "prepare", span.record_from - t, t)
            if t < span.record_to:
                return GuideState(i, "record", span.record_to - t, t)
        return GuideState(len(self.steps), "finishing", max(0.0, self.end_t + self.settle_s - t), t)

    def advance(self, t: float, final: bool = False) -> list[dict]:
        """Messages for the page after media up to ``t`` (``final``: the stream ended): the guide's state
        when its step or phase changed, and the result once, when the last step's windows are in."""
        out = []
        if self.result is None and (final or t >= self.end_t + self.settle_s):
            self.result = self.finish()
            out.append({"type": "guided_result", "result": self.result.to_json()})
        state = self.state(t)
        if (state.step, state.phase) != self._last:
            self._last = (state.step, state.phase)
            out.insert(0, self.message(state))
        return out

    def message(self, state: GuideState) -> dict:
        step = self.steps[state.step].to_json() if state.step < len(self.steps) else None
        return {"type": "guide", **state.to_json(), "task": step, "steps": len(self.steps)}

    def plan_message(self) -> dict:
        return {"type": "guide_plan", "steps": [s.to_json() for s in self.steps],
                "spans": [asdict(s) for s in self.spans]}

    # ---- windows -----------------------------------------------------------------------------------------

    def on_window(self, start: float, quality: dict, pred: Prediction) -> None:
        """The engine's listener: file the window's usable modalities under the step it lies in, if any."""
        end = start + self.window_s
        for step, span, got in zip(self.steps, self.spans, self.collected):
            if start < span.record_from - 1e-6 or end > span.record_to + 1e-6:
                continue
            got.windows += 1
            for m in step.modalities:
                q = quality.get(m, "no_data")
                got.quality.setdefault(m, Counter())[q] += 1
                if q != "ok":
                    continue
                if m in pred.embeddings:
                    got.embeddings.setdefault(m, []).append(np.asarray(pred.embeddings[m][0], np.float32))
                if m in pred.modalities:
                    got.probs.setdefault(m, []).append(np.asarray(pred.modalities[m][0], np.float64))
                if m in pred.unlike and float(pred.unlike[m][0]) > 1.0:
                    got.unlike[m] += 1
            return

    # ---- the result --------------------------------------------------------------------------------------

    def _windows(self, skip: int | None = None) -> dict[str, np.ndarray]:
        """Per fused modality, the embeddings of its usable windows over every step but ``skip``."""
        out: dict[str, list] = {}
        for i, got in enumerate(self.collected):
            if i != skip:
                for m, rows in got.embeddings.items():
                    out.setdefault(m, []).extend(rows)
        return {m: np.stack(rows) for m, rows in out.items() if rows}

    def _fused(self, windows: dict[str, np.ndarray]) -> np.ndarray | None:
        pooled = {m: e.mean(axis=0, keepdims=True) for m, e in windows.items()}
        probs = self.detector.fused_from_embeddings(pooled)
        return None if probs is None else probs[0]

    def _interval(self, windows: dict[str, np.ndarray]) -> list[float]:
        rng = np.random.default_rng(self.seed)
        draws = {m: e[rng.integers(0, len(e), (self.n_boot, len(e)))].mean(axis=1) for m, e in windows.items()}
        p = [shown_p(row) for row in self.detector.fused_from_embeddings(draws)]
        return [float(np.percentile(p, q)) for q in INTERVAL]

    def finish(self) -> SessionResult:
        classes = self.detector.classes
        windows = self._windows()
        probs = self._fused(windows) if windows else None
        unlike = sorted({m for got in self.collected for m in got.strange() if m in windows})
        fused = {"p": None, "label": None, "probs": None, "interval": None, "uncertainty": None, "abstain": True,
                 "why": "no task gave a usable window", "modalities": sorted(windows)}
        if probs is not None:
            uncertain = bool(abstains(probs, self.abstain_band))
            why = (f"unlike the training data: {', '.join(unlike)}" if unlike
                   else "too uncertain" if uncertain else None)
            fused.update(p=shown_p(probs), label=classes[int(np.argmax(probs))],
                         probs={c: float(v) for c, v in zip(classes, probs)}, interval=self._interval(windows),
                         uncertainty=uncertainty(probs), abstain=why is not None, why=why)
            values = self.detector.contract.class_values()
            if values is not None:
                fused["rating"] = rating(probs, values, classes)
        steps = []
        for i, (step, got) in enumerate(zip(self.steps, self.collected)):
            contribution = None
            if probs is not None and got.embeddings:
                rest = self._windows(skip=i)
                without = self._fused(rest) if rest else None
                if without is not None:
                    contribution = shown_p(probs) - shown_p(without)
            steps.append({"name": step.task.name, "title": step.task.title, "windows": got.windows,
                          "usable": {m: int(got.quality.get(m, Counter())["ok"]) for m in step.modalities},
                          "quality": {m: dict(got.quality.get(m, {})) for m in step.modalities},
                          "p": {m: shown_p(np.mean(got.probs[m], axis=0)) for m in step.modalities if m in got.probs},
                          "contribution": contribution, "unlike_windows": dict(got.unlike),
                          "unlike_training": got.strange()})
        return SessionResult(fused, steps, self.detector.model_id)
