"""Reading media with PyAV: probe a file, then decode it onto one clock.

``decode`` returns audio as 16 kHz mono float32 and video as frames at a fixed rate and size (through the
same ``frame_features`` the live stream uses), both starting at the same instant. Both are written to
scratch files as they are decoded and read back a window at a time (``ondisk``), so that curating a long
recording takes no more memory than a short one. Anything wrong with a
file is raised as ``MediaError`` with a ``reason`` from ``REASONS``, so that curation can quarantine the
row and say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from symptomfuse.data.ondisk import DiskArray, RowWriter
from symptomfuse.features.audio import SAMPLE_RATE
from symptomfuse.features.video import FrameConfig, frame_features, quarter_turns

# Magic numbers of containers that FFmpeg reads. A file that starts like one of these but cannot be
# parsed is damaged or truncated ("corrupt"); a file that starts like none is "unreadable".
_SIGNATURES = [(4, b"ftyp"), (0, b"\x1aE\xdf\xa3"), (0, b"RIFF"), (0, b"OggS"), (0, b"\x00\x00\x01\xba"),
               (0, b"ID3"), (0, b"fLaC"), (0, b"\xff\xf1"), (0, b"\xff\xf9"), (4, b"moov"), (4, b"mdat"),
               (4, b"free"), (4, b"wide")]


STREAMS = ("audio", "video")  # the media streams a recording's files can hold


class MediaError(Exception):
    """A recording that cannot be used; ``reason`` is a short code, the message says what to fix."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    """A decoded recording, on disk (``ondisk.DiskArray``): audio and frames are read a slice at a time."""

    audio: DiskArray | None  # (samples,) float32 at 16 kHz
    frames: DiskArray | None  # (frames, H, W, 3) uint8 at cfg.fps
    source_frame_index: np.ndarray | None  # (frames,) index of the decoded source frame used for each
    duration_s: float  # common span of the decoded modalities
    source_fps: float | None
    source_size: tuple[int, int] | None  # (width, height) of the source video
    source_frames: int  # video frames decoded from the source
    per_source_frame: dict  # hook name -> (source frames, ...) what each hook gave per decoded frame (on disk)
    frames_skipped: int = 0  # decoded frames not scaled, since no output instant shows them


def _looks_like_media(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(16)
    return any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES)


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError("missing_file", f"file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError("empty_file", f"file is empty (0 bytes): {path}")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        if _looks_like_media(path):
            raise MediaError("corrupt", f"container header found but the file cannot be parsed "
                                        f"(truncated or damaged): {exc}") from exc
        raise MediaError("unreadable", f"not a media file FFmpeg recognises: {exc}") from exc


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1e6
    return None


@dataclass(frozen=True)
class MediaInfo:
    """What a file declares before decoding: per stream type its declared duration, and the video's
    frame rate and size."""

    declared: dict  # stream type ("audio"/"video") -> declared seconds or None
    fps: float | None
    size: tuple[int, int] | None  # (width, height)


def open_media(path: Path, want_audio: bool, want_video: bool):
    """Open a file for decoding: ``(container, streams, MediaInfo)``. Raises MediaError when a wanted
    stream is missing."""
    container = _open(path)
    streams, declared, fps, size = [], {}, None, None
    try:
        if want_audio:
            if not container.streams.audio:
                raise MediaError("no_audio", f"no audio stream in {path.name}")
            streams.append(container.streams.audio[0])
        if want_video:
            if not container.streams.video:
                raise MediaError("no_video", f"no video stream in {path.name}")
            vs = container.streams.video[0]
            streams.append(vs)
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else None
            size = (vs.codec_context.width, vs.codec_context.height)
        for s in streams:
            declared[s.type] = _declared_duration(container, s)
    except MediaError:
        container.close()
        raise
    return container, streams, MediaInfo(declared, fps, size)


def _joinable(frame: av.AudioFrame) -> bool:
    """Whether ``_joined`` may read the frame's samples: PyAV 18 counts one plane too many for planar audio
    of 8 or more channels (FFmpeg's frame holds 8 plane pointers, the rest elsewhere) and crashes the
    process reading it (a segmentation fault, in ``to_ndarray``); libswresample reads such a frame itself."""
    return not frame.format.is_planar or len(frame.layout.channels) < 8


def _joined(frames: list) -> av.AudioFrame:
    """Decoded audio frames of one format as one frame (libswresample gives the same samples for any
    chunking of its input, so resampling them together equals resampling them one by one)."""
    if len(frames) == 1:
        return frames[0]
    first = frames[0]
    big = av.AudioFrame.from_ndarray(np.concatenate([f.to_ndarray() for f in frames], axis=1),
                                     format=first.format.name, layout=first.layout.name)
    big.sample_rate, big.pts, big.time_base = first.sample_rate, first.pts, first.time_base
    return big


def iter_decoded(container, streams, fallback_fps: float, audio_batch: int = 1):
    """Decode ``streams`` in the file's order, yielding ``("audio", t, samples)`` with 16 kHz mono
    float32 chunks (libswresample; contiguous from the first audio frame's time ``t``) and
    ``("video", t, av.VideoFrame)``. Curation and live file replay both read files through this loop, so
    both see the same samples and frames. A frame without a timestamp gets ``index / fallback_fps``.

    ``audio_batch``: resample this many decoded audio frames at once (the same samples, with a fraction of
    the per-call cost; curation batches, live replay does not, so that audio arrives as it is decoded).
    Until the first samples have come out, each frame is resampled as it comes, so that the audio's start
    time is known early."""
    want_audio = any(s.type == "audio" for s in streams)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if want_audio else None
    audio_t, n_frames, pending, audio_out = None, 0, [], False

    def resampled(frame):
        nonlocal audio_t, audio_out
        for f in resampler.resample(frame):
            samples = f.to_ndarray()[0]
            audio_out = True
            yield "audio", audio_t, samples
            audio_t += len(samples) / SAMPLE_RATE

    try:
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    if audio_t is None:
                        audio_t = float(frame.time) if frame.time is not None else 0.0
                    if pending and (frame.format.name, frame.layout.name, frame.sample_rate) != \
                            (pending[0].format.name, pending[0].layout.name, pending[0].sample_rate):
                        yield from resampled(_joined(pending))
                        pending = []
                    pending.append(frame)
                    if len(pending) >= audio_batch or not audio_out or not _joinable(frame):
                        yield from resampled(_joined(pending))
                        pending = []
                else:
                    t = float(frame.time) if frame.time is not None else n_frames / fallback_fps
                    n_frames += 1
                    yield "video", t, frame
        if resampler is not None and audio_t is not None:
            if pending:
                yield from resampled(_joined(pending))
            yield from resampled(None)
    except av.error.FFmpegError as exc:
        raise MediaError("corrupt", f"decoding failed part-way (damaged or truncated): {exc}") from exc


# Seconds by which an output instant may precede a frame's time and still show it (float rounding):
# ``_resample_frames`` places frames by it, and ``_first_slot_from`` must judge them the same way.
_SLOT_TOLERANCE_S = 1e-6


def _first_slot_from(t: float, start: float, fps: float) -> float | None:
    """The earliest output instant at or after ``t`` as ``_resample_frames`` compares it with a frame's
    time (``start + k / fps + _SLOT_TOLERANCE_S``, k >= 0, the same float operations); None (undecided)
    where the times are so large that floats round several instants to one value: a file's timestamps
    are untrusted, and a few tries bound the work."""
    first = max(0, int(np.floor((t - start) * fps)) - 2)
    for k in range(first, first + 5):
        instant = start + k / fps + _SLOT_TOLERANCE_S
        if instant >= t:
            return instant
    return None


def _decode_file(path: Path, want_audio: bool, want_video: bool, frame_cfg: FrameConfig, scratch: Path,
                 hooks: dict | None = None, audio_start: float | None = None, skip_unshown: bool = True):
    """Decode the wanted streams of one file into scratch files (16 kHz samples; frames at ``frame_cfg``'s
    size, in decode order) as they come, so that memory does not grow with the file's length. Returns a
    dict with the writers, the first audio sample's time, the frame times, and what each of ``hooks``
    (name -> fn(av.VideoFrame)) gave for each video frame.

    ``skip_unshown``: a decoded frame that no output instant will show (a 30 fps source brought to 25 fps
    drops one frame in six) is not scaled; its row is left black, and ``decode``'s index never points at
    it. Whether an instant shows a frame is known when the next frame's time comes: the output instants
    start at the later of the two streams' first times (``audio_start``, when the audio is another file),
    and a frame is shown from its time until the next one's. Frames that come out of time order end the
    skipping, and the file is decoded again without it. Nothing is skipped where there are hooks: they see
    every frame, and their trackers keep state, which a second decoding would carry on."""
    container, streams, info = open_media(path, want_audio, want_video)
    hooks = hooks or {}
    skip_unshown = skip_unshown and not hooks
    out = {"audio": RowWriter(scratch / f"{path.name}.audio") if want_audio else None, "audio_t0": None,
           "frames": RowWriter(scratch / f"{path.name}.frames") if want_video else None, "frame_t": [],
           "declared": info.declared, "fps": info.fps, "size": info.size,
           "per_frame": {name: RowWriter(scratch / f"{path.name}.{name}") for name in hooks}}
    held = None  # the last video frame: scaled (or skipped) when the next one's time is known
    blank = np.zeros((1, frame_cfg.height, frame_cfg.width, 3), np.uint8)
    in_order, skipped = True, 0

    def first_instant() -> float | None:
        """Where the output instants start (``decode``'s rule), or None while the audio's start is unknown."""
        a_start = audio_start if audio_start is not None else out["audio_t0"] if want_audio else None
        if want_audio and a_start is None:
            return None
        return out["frame_t"][0] if a_start is None else max(out["frame_t"][0], a_start)

    def write_held(next_t: float | None) -> None:
        nonlocal skipped
        t, frame = held
        start = first_instant() if skip_unshown and in_order and next_t is not None else None
        # never the first frame; a frame is shown until the next one's time (the later of two at one time)
        slot = _first_slot_from(t, start, frame_cfg.fps) if start is not None and out["frames"].rows > 0 else None
        if slot is not None and next_t >= t and slot >= next_t:
            out["frames"].append(blank)
            skipped += 1
        else:
            out["frames"].append(frame_features(frame, frame_cfg)[None])

    try:
        with container:
            for kind, t, payload in iter_decoded(container, streams, info.fps or frame_cfg.fps, audio_batch=64):
                if kind == "audio":
                    if out["audio_t0"] is None:
                        out["audio_t0"] = t
                    out["audio"].append(payload)
                else:
                    if out["frame_t"] and t < out["frame_t"][-1]:
                        in_order = False  # no more skipping; and those skipped were judged on a wrong order
                    if not out["frame_t"] and out["size"] and quarter_turns(payload) % 2:
                        out["size"] = out["size"][::-1]  # a portrait video stored on its side: as shown
                    out["frame_t"].append(t)
                    if held is not None:
                        write_held(t)
                    held = (t, payload)
                    for name, hook in hooks.items():
                        out["per_frame"][name].append(np.asarray(hook(payload))[None])
            if held is not None:
                write_held(None)
    finally:
        for writer in [out["audio"], out["frames"], *out["per_frame"].values()]:
            if writer is not None:
                writer.close()
    if not in_order and skipped:  # decode again, scaling every frame (its writers are closed above)
        return _decode_file(path, want_audio, want_video, frame_cfg, scratch, hooks, audio_start, skip_unshown=False)
    out["skipped"] = skipped
    if want_audio and not out["audio"].rows:
        raise MediaError("no_audio", f"the audio stream of {path.name} holds no decodable samples")
    if want_video and not out["frames"].rows:
        raise MediaError("no_video", f"the video stream of {path.name} holds no decodable frames")
    return out


def _check_complete(kind: str, declared: float | None, decoded: float, path: Path) -> None:
    if declared is not None and declared > 0 and decoded < 0.9 * declared - 0.25:
        raise MediaError("corrupt", f"{kind} of {path.name} ends at {decoded:.2f} s but the file declares "
                                    f"{declared:.2f} s: truncated or damaged")


def _resample_frames(times: np.ndarray, start: float, end: float, fps: float) -> np.ndarray:
    """For each output instant start + k/fps before ``end``, the index of the last source frame shown
    at that instant (a frame is shown from its timestamp until the next one's)."""
    n_out = int(np.floor((end - start) * fps + 1e-6))
    slots = start + np.arange(n_out) / fps
    return np.clip(np.searchsorted(times, slots + _SLOT_TOLERANCE_S, side="right") - 1, 0, len(times) - 1)


def decode(audio_path: Path | None, video_path: Path | None, scratch: Path,
           frame_cfg: FrameConfig = FrameConfig(), hooks: dict | None = None, skip_unshown: bool = True) -> Decoded:
    """Decode a recording: one A/V file (same path twice) or separate audio and video files, into files
    under ``scratch`` (which must outlive the returned arrays).

    Audio and video are aligned on their timestamps and trimmed to the span both cover. ``hooks`` (name ->
    fn(av.VideoFrame)) run on every decoded video frame at its full size (``Decoded.per_source_frame``).
    ``skip_unshown``: do not scale the decoded frames that no output instant shows (the same frames).
    """
    scratch = Path(scratch)
    same = audio_path is not None and audio_path == video_path
    parts = {}
    if same:
        parts["audio"] = parts["video"] = _decode_file(audio_path, True, True, frame_cfg, scratch, hooks,
                                                       skip_unshown=skip_unshown)
    else:
        if audio_path is not None:
            parts["audio"] = _decode_file(audio_path, True, False, frame_cfg, scratch)
        if video_path is not None:
            a_start = (parts["audio"]["audio_t0"] or 0.0) if "audio" in parts else None
            parts["video"] = _decode_file(video_path, False, True, frame_cfg, scratch, hooks, a_start, skip_unshown)

    spans = []
    if "audio" in parts:
        a = parts["audio"]
        n_samples = a["audio"].rows
        a_start = a["audio_t0"] or 0.0
        a_end = a_start + n_samples / SAMPLE_RATE
        _check_complete("audio", a["declared"].get("audio"), n_samples / SAMPLE_RATE, audio_path)
        spans.append((a_start, a_end))
    if "video" in parts:
        v = parts["video"]
        times = np.asarray(v["frame_t"])
        order = np.argsort(times, kind="stable")  # decoders emit in presentation order; be sure
        times = times[order]
        step = 1.0 / (v["fps"] or frame_cfg.fps)
        v_start, v_end = float(times[0]), float(times[-1]) + step
        _check_complete("video", v["declared"].get("video"), v_end - v_start, video_path)
        spans.append((v_start, v_end))

    start = max(s for s, _ in spans)
    end = min(e for _, e in spans)
    if end <= start:
        raise MediaError("corrupt", "audio and video do not overlap in time")
    audio = frames = index = None
    if "audio" in parts:
        first = int(round((start - a_start) * SAMPLE_RATE))
        length = min(int(round((end - start) * SAMPLE_RATE)), n_samples - first)
        audio = a["audio"].array(start=first, length=length)
    if "video" in parts:
        index = order[_resample_frames(times, start, end, frame_cfg.fps)]
        frames = v["frames"].array(index=index)
    durations = []
    if audio is not None:
        durations.append(len(audio) / SAMPLE_RATE)
    if frames is not None:
        durations.append(len(frames) / frame_cfg.fps)
    v = parts.get("video", {})
    per_source_frame = {name: got.array() for name, got in v.get("per_frame", {}).items() if got.rows}
    return Decoded(audio=audio, frames=frames, source_frame_index=index, duration_s=float(min(durations)),
                   source_fps=v.get("fps"), source_size=v.get("size"),
                   source_frames=v["frames"].rows if v else 0, per_source_frame=per_source_frame,
                   frames_skipped=v.get("skipped", 0))


def probe_duration(path: Path) -> float:
    """Declared duration in seconds of a media file, without decoding (for benchmarks and summaries)."""
    with _open(path) as container:
        return container.duration / 1e6 if container.duration else 0.0
