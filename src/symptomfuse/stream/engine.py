"""The streaming engine that every live path uses: push media in, get detection events out.

Audio, video frames and hand landmarks go into ring buffers on one media clock (``buffers``). Windows
have the length of the training windows and start every ``update_every`` seconds on a grid from
``origin`` (default 0). A window is evaluated once every modality that has sent data has reached its
end, or once any modality is ``max_wait_s`` past it (the late one is then reported "no_data"). For each
window the engine:

1. cuts each modality's window and gates it (``quality``): e.g. silence, no voice, black or frozen
   picture, no hand;
2. computes the model inputs with the same feature functions as curation: each modality of the
   registry reads its window from the rings and gates it (``Modality.live_window``);
3. runs each passing modality's model and the primary (fused) model over the passing modalities it has
   (``Detector.predict``);
4. smooths the fused probabilities over the last ``smooth`` updates and decides whether to abstain.

Each event is a ``LiveEvent`` (schema ``symptomfuse-event/1``), handed out as its plain JSON dict:

    {"schema": "symptomfuse-event/1", "t": window end (s), "window": [start, end],
     "modalities": {M: {"p": float | None, "quality": "ok" | why not (the modality's ``live_qualities``),
                        and when M's own model has an embedding density (``models.ood``):
                        "ood": distance / threshold, "unlike_training": ood > 1}
                    for every modality the detector knows},
     "fused": {"p": float | None, "label": str | None, "uncertainty": float | None, "abstain": bool,
               "modalities": [the modalities fused], "p_window": this window's p before smoothing,
               "unlike_training": [fused modalities whose input is unlike the training data]},
     "latency_ms": wall time from the first push that reached the window's end to the event,
     "notice": the research-tool notice}

``p`` is the probability of the positive class (the contract's explicit positive class); with more
classes it is the top class's probability, and ``fused`` also carries ``probs`` per class.
``uncertainty`` is the entropy of the smoothed probabilities divided by its maximum (0: certain, 1: a
coin toss). The engine abstains when no modality passed its gate, when the top probability is within
``abstain_band`` of chance (the rule of ``symptomfuse evaluate --abstain-band``), or when an input it
fused is unlike anything the model was trained on (a real voice given to a model of synthetic vowels).

One engine serves one stream and is not thread-safe: call it from one thread. Engines may share one
Detector. A live process should call ``detector.limit_threads(1)`` first (idle BLAS threads spin
between updates and would multiply the CPU a stream uses).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, fields

import av
import numpy as np

from symptomfuse import NOTICE
from symptomfuse.evaluate.metrics import abstains, ordinal_index
from symptomfuse.features.keypoints import N_LANDMARKS
from symptomfuse.features.video import frame_features, frame_from_array, quarter_turns
from symptomfuse.stream.buffers import Streams
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.quality import QualityConfig
from symptomfuse.errors import UsageError

EVENT_SCHEMA = "symptomfuse-event/1"


@dataclass
class LiveEvent:
    t: float
    window: list
    modalities: dict  # name -> {"p": float | None, "quality": str}
    fused: dict
    latency_ms: float = 0.0
    model: str = ""  # the export it came from (``Detector.model_id``), so results of two models never mix
    notice: str = NOTICE
    schema: str = EVENT_SCHEMA

    def to_json(self) -> dict:
        # shallow: the engine builds each event's dicts afresh (dataclasses.asdict's deep copy was a fifth of
        # the engine's own CPU per update)
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _landmark_row(landmarks: np.ndarray | None) -> np.ndarray:
    """One frame's hand landmarks as the ring holds them: (21, 3) float32, NaN when no hand was found."""
    if landmarks is None:
        return np.full((N_LANDMARKS, 3), np.nan, np.float32)
    lm = np.asarray(landmarks, np.float32)
    if lm.shape not in ((N_LANDMARKS, 2), (N_LANDMARKS, 3)):
        raise UsageError(f"push_landmarks takes ({N_LANDMARKS}, 2 or 3) landmarks or None, got {lm.shape}")
    if lm.shape[1] == 2:
        lm = np.concatenate([lm, np.zeros((N_LANDMARKS, 1), np.float32)], axis=1)
    return lm


class LandmarkDetector:
    """A landmark detector (``features.landmarks``: "hands", "face" or "blendshapes") that the engine runs on
    each pushed frame, on its own thread, into ``ring``. A frame that comes while the detector is over its budget
    (``budget_s`` of detection per frame, on average, in ``clock`` seconds) is skipped and remembered, so that
    a window that lost more than half its frames can say "landmarks_behind". A skipped frame holds the last
    detected frame's landmarks (as the rings hold the last frame over a gap in the video): the detector not
    looking is no evidence that the face or hand left, and a window that lost a third of its frames to a
    busy machine must not read "no face"."""

    def __init__(self, kind: str, ring, budget_s: float, keep_s: float, clock=time.perf_counter):
        from symptomfuse.features.landmarks import frame_hook, missing

        self.kind, self.ring, self.budget_s, self.keep_s, self.clock = kind, ring, budget_s, keep_s, clock
        self.extract = frame_hook(kind)
        self.held = missing(kind)  # the last detected frame's output, given to the frames skipped after it
        self.debt = 0.0  # detection seconds spent beyond the budget, paid back by skipping frames
        self.skipped: deque = deque()  # media times of frames whose landmarks were skipped
        self.seconds: deque = deque(maxlen=10_000)  # per detected frame: detection wall seconds

    def push(self, frame: av.VideoFrame, t: float) -> None:
        if self.debt > 0:
            self.debt = max(0.0, self.debt - self.budget_s)
            self.skipped.append(t)
        else:
            t0 = self.clock()
            self.held = self.extract(frame)
            spent = self.clock() - t0
            self.seconds.append(spent)
            self.debt = max(0.0, spent - self.budget_s)
        while self.skipped and self.skipped[0] < t - self.keep_s:
            self.skipped.popleft()
        self.ring.push(self.held, t)

    def behind(self, start: float, window_s: float, window_frames: int) -> bool:
        """Whether the window from ``start`` lost more than half its frames to the budget."""
        return sum(start <= t < start + window_s for t in self.skipped) > 0.5 * window_frames


def uncertainty(probs: np.ndarray) -> float:
    """Entropy of ``probs`` over its maximum, log(K): 0 certain, 1 uniform."""
    p = np.clip(probs, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum() / math.log(len(p)))


DETECTOR_ARGS = {"hands": "hand_detector", "face": "face_detector", "blendshapes": "blendshape_detector"}


def landmarks_needed(detector: Detector) -> set[str]:
    """The landmarks ("hands", "face", "blendshapes") the detector's modalities read live
    (``Modality.live_landmarks``)."""
    return {k for m in detector.modalities if (k := detector.contract.modality(m).live_landmarks)}


def mediapipe_detectors(kinds) -> dict[str, str]:
    """``StreamEngine`` keyword arguments that run MediaPipe for each kind of landmarks in ``kinds``."""
    return {DETECTOR_ARGS[k]: "mediapipe" for k in kinds}


def rating(probs: np.ndarray, values: np.ndarray | None, classes: list[str]) -> dict | None:
    """For a model of ordinal ratings (``curate --ordinal``): the expected rating and the predicted one, by
    the rule evaluation scores (``metrics.ordinal_prediction``), not the most probable class; None for
    other models."""
    if values is None:
        return None
    p = np.asarray(probs, np.float64)[None]
    return {"expected": round(float(p[0] @ values), 3), "predicted": classes[int(ordinal_index(p, values)[0])]}


def shown_p(probs: np.ndarray) -> float:
    """The one number an event shows for class probabilities ``probs``: the positive (second) class's
    probability with two classes, else the top class's."""
    return float(probs[-1]) if len(probs) == 2 else float(probs.max())


MIN_UPDATE_EVERY_S = 0.01  # the shortest time between updates: one spectrogram step (and under a video frame)


class StreamEngine:
    def __init__(self, detector: Detector, update_every: float = 0.5, smooth: int = 3, abstain_band: float = 0.1,
                 origin: float = 0.0, max_wait_s: float = 0.5, quality: QualityConfig = QualityConfig(),
                 aspect: float | None = None, clock=time.perf_counter, hand_detector: str | None = None,
                 landmark_budget_s: float | None = None, face_detector: str | None = None,
                 blendshape_detector: str | None = None):
        """``smooth``: updates averaged in the fused result (1: none). ``aspect``: width / height of the
        picture the landmarks were found in (default: taken from the pushed frames, else 4:3).
        ``clock``: the wall clock for latencies. ``hand_detector="mediapipe"`` / ``face_detector=
        "mediapipe"``: find hand / face landmarks in each pushed frame on this thread
        (``LandmarkDetector``), for a source without landmarks of its own (a camera); a frame that comes
        while a detector is over its budget (``landmark_budget_s`` per frame, on average; default: half a
        frame interval each) is skipped, and a window that lost more than half its frames so is reported
        "landmarks_behind". ``blendshape_detector="mediapipe"``: the same for face blendshapes."""
        if not MIN_UPDATE_EVERY_S <= update_every <= 60:
            raise UsageError(f"update_every must be {MIN_UPDATE_EVERY_S}-60 s (one update a spectrogram step at the "
                             f"most), got {update_every}")
        if smooth < 1:
            raise UsageError(f"smooth must be at least 1 update, got {smooth}")
        if not 0 <= abstain_band < 0.5:
            raise UsageError(f"abstain_band must be in [0, 0.5), got {abstain_band}")
        self.detector, self.contract = detector, detector.contract
        self.rating_values = self.contract.class_values()  # ratings (curate --ordinal), or None
        self.update_every, self.origin, self.max_wait_s = float(update_every), float(origin), float(max_wait_s)
        self.abstain_band, self.quality, self.clock = abstain_band, quality, clock
        self.window_s = self.contract.timing.window_s
        self.keep_s = keep_s = self.window_s + self.update_every + self.max_wait_s + 1.0
        self.modalities = {m: self.contract.modality(m) for m in detector.modalities}
        self.streams = Streams(self.contract.timing.fps, self.origin, keep_s, quality,
                               self.contract.frame_config(list(self.modalities)))
        self.streams.aspect = aspect
        self.states = {m: mod.live_state(keep_s) for m, mod in self.modalities.items()}
        self._history: deque = deque(maxlen=smooth)
        self._next: int | None = None  # grid index of the next window's start
        self._reached: float | None = None  # wall time at which data first reached the next window's end
        self.timings: deque = deque(maxlen=10_000)  # per update: (update CPU s, of which model forward CPU s)
        # called after each window with (start, quality per modality, Prediction): e.g. a guided session
        self.listeners: list = []
        budget = landmark_budget_s if landmark_budget_s is not None else 0.5 / self.contract.timing.fps
        self.landmark_detectors: dict[str, LandmarkDetector] = {}
        for kind, name in (("hands", hand_detector), ("face", face_detector), ("blendshapes", blendshape_detector)):
            if name is not None:
                if name != "mediapipe":
                    raise UsageError(f"{DETECTOR_ARGS[kind]} must be 'mediapipe' or None, got {name!r}")
                self.landmark_detectors[kind] = LandmarkDetector(kind, self.streams.by_kind[kind], budget, keep_s)

    @property
    def landmark_seconds(self) -> deque:
        """Per frame the hand detector ran on: its wall seconds (empty without a hand detector)."""
        hands = self.landmark_detectors.get("hands")
        return hands.seconds if hands is not None else deque()

    # ---- input -------------------------------------------------------------------------------------------

    def push_audio(self, samples: np.ndarray, sample_rate: int, t: float) -> list[dict]:
        """Mono float samples in [-1, 1] at any rate; ``t``: media time of the first sample."""
        wall = self.clock()
        self.streams.audio.push(samples, sample_rate, t)
        return self._due(wall)

    def push_video(self, frame: av.VideoFrame | np.ndarray, t: float) -> list[dict]:
        """A PyAV frame, or an (H, W, 3) uint8 RGB image; ``t``: its presentation time in seconds."""
        wall = self.clock()
        if isinstance(frame, np.ndarray):
            frame = frame_from_array(frame, "rgb")
        elif not isinstance(frame, av.VideoFrame):
            raise TypeError(f"push_video takes an av.VideoFrame or an (H, W, 3) uint8 array, got {type(frame)}")
        if self.streams.aspect is None:  # as shown: a portrait video stored on its side is turned upright
            self.streams.aspect = (frame.height / frame.width) if quarter_turns(frame) % 2 else frame.width / frame.height
        cfg = self.streams.frame_config
        self.streams.frames.push(frame_features(frame, cfg) if cfg is not None else None, t)
        for found in self.landmark_detectors.values():
            found.push(frame, t)
        return self._due(wall)

    def push_landmarks(self, landmarks: np.ndarray | None, t: float) -> list[dict]:
        """(21, 2 or 3) hand landmarks normalised like MediaPipe's (x / width, y / height), or None when no
        hand was found, for the frame at media time ``t``."""
        wall = self.clock()
        self.streams.landmarks.push(_landmark_row(landmarks), t)
        return self._due(wall)

    def flush(self) -> list[dict]:
        """End of input: evaluate every window that the data reached."""
        wall = self.clock()
        self.streams.close()
        return self._due(wall, final=True)

    # ---- windows -----------------------------------------------------------------------------------------

    def _due(self, wall: float, final: bool = False) -> list[dict]:
        clocks = self.streams.clocks()
        if not clocks:
            return []
        if self._next is None:
            starts = self.streams.first_times()
            self._next = math.ceil((min(starts) - self.origin) / self.update_every - 1e-9)
        # after a gap longer than the rings hold, skip the windows that can no longer be read
        held_from = max(clocks) - self.keep_s
        self._next = max(self._next, math.ceil((held_from - self.origin) / self.update_every - 1e-9))
        events = []
        while True:
            start = self.origin + self._next * self.update_every
            end = start + self.window_s
            if max(clocks) < end - 1e-9:
                break
            if self._reached is None:
                self._reached = wall
            if not (final or min(clocks) >= end - 1e-9 or max(clocks) >= end + self.max_wait_s):
                break
            events.append(self._update(start))
            self._next += 1
            self._reached = None
        return events

    def _update(self, start: float) -> dict:
        cpu0 = time.process_time()
        wanted = set(self.detector.modalities)
        quality, inputs = {}, {}
        for m, mod in self.modalities.items():
            quality[m], x = mod.live_window(self.streams, self.states[m], start, m in wanted)
            found = self.landmark_detectors.get(mod.live_landmarks)
            if found is not None and found.behind(start, self.window_s, self.contract.timing.window_frames()):
                quality[m], x = "landmarks_behind", None
            if x is not None:
                inputs[m] = x

        cpu1 = time.process_time()
        pred = self.detector.predict(inputs)
        cpu2 = time.process_time()
        event = self._event(start, quality, pred)
        for listener in self.listeners:
            listener(start, quality, pred)
        self.timings.append((time.process_time() - cpu0, cpu2 - cpu1))
        event["latency_ms"] = (self.clock() - self._reached) * 1000.0
        return event

    # ---- events ------------------------------------------------------------------------------------------

    def _event(self, start: float, quality: dict, pred) -> dict:
        modalities = {}
        for m in self.modalities:
            probs = pred.modalities.get(m)
            modalities[m] = {"p": None if probs is None else shown_p(probs[0]), "quality": quality[m]}
            if m in pred.unlike:
                score = float(pred.unlike[m][0])
                modalities[m].update(ood=score, unlike_training=score > 1.0)
        unlike = [m for m in pred.fused_modalities if modalities.get(m, {}).get("unlike_training")]
        fused = {"p": None, "label": None, "uncertainty": None, "abstain": True, "modalities": [], "p_window": None,
                 "unlike_training": unlike}
        if pred.fused is None:
            self._history.clear()  # nothing usable: do not carry an old result into a new person or scene
        else:
            raw = pred.fused[0]
            self._history.append(raw)
            probs = np.mean(self._history, axis=0)
            fused.update(p=shown_p(probs), label=self.detector.classes[int(np.argmax(probs))],
                         uncertainty=uncertainty(probs),
                         abstain=bool(abstains(probs, self.abstain_band)) or bool(unlike),
                         modalities=pred.fused_modalities, p_window=shown_p(raw))
            if len(probs) > 2:
                fused["probs"] = {c: float(v) for c, v in zip(self.detector.classes, probs)}
            if self.rating_values is not None:
                fused["rating"] = rating(probs, self.rating_values, self.detector.classes)
        end = start + self.window_s
        return LiveEvent(round(end, 6), [round(start, 6), round(end, 6)], modalities, fused,
                         model=self.detector.model_id).to_json()
