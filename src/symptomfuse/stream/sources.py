"""Live sources that feed a ``StreamEngine``: a file replayed, a webcam (OpenCV), a microphone (sounddevice).

Each is a generator of events. Any other source (a WebRTC track, a custom capture) calls the engine's
``push_audio`` / ``push_video`` / ``push_landmarks`` itself.

* ``replay_file`` decodes with the same loop as curation (``media.iter_decoded``); with ``realtime`` it
  hands each piece to the engine when it would have arrived live (a frame at its time, an audio chunk
  at its end), else as fast as possible. Hand landmarks come from a ``.keypoints.npy`` file beside the
  recording when there is one (one row per video frame, as ``symptomfuse synth`` writes), or from
  ``landmarks=PATH``; without either, an engine made with ``hand_detector="mediapipe"`` finds them in
  the frames itself.
* ``live`` reads a camera and/or a microphone until stopped or ``seconds`` have passed. A missing device
  or library raises ``DeviceError`` with what to do.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from symptomfuse.data.media import MediaError, iter_decoded, open_media
from symptomfuse.features.audio import SAMPLE_RATE
from symptomfuse.features.keypoints import load_landmarks
from symptomfuse.stream.engine import StreamEngine
from symptomfuse.errors import UsageError


class DeviceError(RuntimeError):
    """A camera or microphone that cannot be opened; the message says what to check."""


def sidecar_landmarks(path: Path) -> Path | None:
    """``NAME.keypoints.npy`` beside ``NAME.EXT``, if it exists."""
    candidate = Path(path).with_suffix(".keypoints.npy")
    return candidate if candidate.is_file() else None


def replay_file(engine: StreamEngine, path: str | Path, realtime: bool = False,
                landmarks: str | Path | None = "auto", clock=time.perf_counter, sleep=time.sleep) -> Iterator[dict]:
    """Replay a recording through ``engine``; yields events, then those of ``engine.flush()``.

    ``landmarks``: "auto" (the sidecar file if any), None (no landmarks), or a .npy path. ``clock`` and
    ``sleep`` pace a real-time replay.
    """
    path = Path(path)
    kp_path = sidecar_landmarks(path) if landmarks == "auto" else (Path(landmarks) if landmarks else None)
    kp = load_landmarks(kp_path) if kp_path is not None else None
    container, streams, info = _open_any(path)
    wall0, t0, n_frames = clock(), None, 0
    with container:
        for kind, t, payload in iter_decoded(container, streams, info.fps or engine.contract.timing.fps):
            available = t + len(payload) / SAMPLE_RATE if kind == "audio" else t
            if t0 is None:
                t0 = t
            if realtime:
                wait = wall0 + (available - t0) - clock()
                if wait > 0:
                    sleep(wait)
            if kind == "audio":
                yield from engine.push_audio(payload, SAMPLE_RATE, t)
            else:
                yield from engine.push_video(payload, t)
                if kp is not None:
                    yield from engine.push_landmarks(kp[min(n_frames, len(kp) - 1)], t)
                n_frames += 1
    yield from engine.flush()


def _open_any(path: Path):
    """``media.open_media`` for whichever of audio and video the file has."""
    try:
        return open_media(path, want_audio=True, want_video=True)
    except MediaError as exc:
        if exc.reason not in ("no_audio", "no_video"):
            raise
        return open_media(path, want_audio=exc.reason == "no_video", want_video=exc.reason == "no_audio")


def open_camera(index: int):
    """An opened ``cv2.VideoCapture``, or DeviceError."""
    import cv2

    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent: OpenCV's own warnings about the index; our error says what to do
    try:
        cap = cv2.VideoCapture(int(index))
    finally:
        cv2.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise DeviceError(f"no camera at index {index}: check that one is connected and not in use by another "
                          "program (on Linux: ls /dev/video*), or stream a file instead: symptomfuse stream FILE")
    ok, _ = cap.read()
    if not ok:
        cap.release()
        raise DeviceError(f"camera {index} opened but gives no picture: check permissions and that no other "
                          "program holds it")
    return cap


def open_microphone(device: str | int | None, block_s: float = 0.05):
    """A started sounddevice InputStream (mono, 16 kHz) and the queue its blocks arrive in, or DeviceError.

    ``device``: "default", an index, or part of a device name (as ``python -m sounddevice`` lists them).
    """
    try:
        import sounddevice as sd
    except ImportError as exc:
        raise DeviceError("microphone input needs the sounddevice package: pip install sounddevice") from exc
    except OSError as exc:  # sounddevice imports, then fails to find the PortAudio library
        raise DeviceError(f"microphone input needs the PortAudio library ({exc}): on Debian/Ubuntu "
                          "apt-get install libportaudio2") from exc
    if device in (None, "default"):
        device = None
    elif isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=SAMPLE_RATE, dtype="float32")
    except Exception as exc:  # PortAudioError or ValueError: no such device, or no input channels
        raise DeviceError(f"no usable microphone {device if device is not None else '(default)'}: {exc}; "
                          "list devices with: python -m sounddevice") from exc
    blocks: queue.Queue = queue.Queue(maxsize=200)
    t0 = time.monotonic()

    def callback(indata, frames, time_info, status):  # on PortAudio's thread
        t = time.monotonic() - t0 - frames / SAMPLE_RATE
        try:
            blocks.put_nowait((t, indata[:, 0].copy()))
        except queue.Full:
            pass  # the engine is not keeping up: drop audio (the gap is filled with silence)

    stream = sd.InputStream(device=device, channels=1, samplerate=SAMPLE_RATE, dtype="float32",
                            blocksize=int(block_s * SAMPLE_RATE), callback=callback)
    stream.start()
    return stream, blocks, t0


def live(engine: StreamEngine, camera: int | None = None, mic: str | int | None = None,
         seconds: float | None = None) -> Iterator[dict]:
    """Stream a camera and/or microphone through ``engine`` until interrupted or ``seconds`` pass."""
    if camera is None and mic is None:
        raise UsageError("give a camera (--camera 0) and/or a microphone (--mic default)")
    cap = open_camera(camera) if camera is not None else None
    try:
        stream, blocks, t0 = open_microphone(mic) if mic is not None else (None, None, time.monotonic())
    except DeviceError:
        if cap is not None:
            cap.release()
        raise
    try:
        while seconds is None or time.monotonic() - t0 < seconds:
            if cap is not None:  # a camera read waits for the next picture (about 1 / fps)
                ok, image = cap.read()
                if not ok:
                    raise DeviceError(f"camera {camera} stopped giving pictures")
                yield from engine.push_video(np.ascontiguousarray(image[..., ::-1]), time.monotonic() - t0)
            else:  # microphone only: wait for the next block
                try:
                    t, samples = blocks.get(timeout=0.5)
                    yield from engine.push_audio(samples, SAMPLE_RATE, t)
                except queue.Empty:
                    continue
            while blocks is not None and not blocks.empty():
                t, samples = blocks.get_nowait()
                yield from engine.push_audio(samples, SAMPLE_RATE, t)
        yield from engine.flush()
    finally:
        if cap is not None:
            cap.release()
        if stream is not None:
            stream.stop()
            stream.close()
