"""Ring buffers on the engine's media clock: audio samples, and fixed-rate slots for frames and landmarks.

Both place data exactly where curation places it, so a live window holds the same numbers as the
training window over the same span:

* ``AudioRing`` keeps 16 kHz samples contiguous from the time of the first one (as ``media.decode``
  does), resampling other rates with libswresample, statefully, as curation's decoder does.
* ``SlotRing`` keeps one item per slot at ``origin + k / fps``; slot k holds the last item whose time is
  at or before the slot's (``media._resample_frames``'s rule), so frames at any source rate are brought
  to the training frame rate the same way. A slot is final once an item later than it has arrived.
"""

from __future__ import annotations

import math
from collections import deque

import av
import numpy as np

from symptomfuse.features.audio import SAMPLE_RATE, LogMelConfig, log_mel

_EPS = 1e-6  # seconds: the tolerance media._resample_frames uses to compare frame and slot times


class AudioRing:
    """Mono 16 kHz samples with absolute indices; keeps the most recent ``keep_s`` seconds."""

    def __init__(self, keep_s: float, max_gap_s: float = 0.1):
        self.capacity = int(math.ceil(keep_s * SAMPLE_RATE))
        self.data = np.zeros(2 * self.capacity, np.float32)
        self.used = 0  # samples held in self.data[:used]
        self.end = 0  # absolute index one past the newest sample
        self.start_t: float | None = None  # media time of absolute sample 0
        self.max_gap_s = max_gap_s
        self._resampler: av.AudioResampler | None = None
        self._rate: int | None = None
        self._next_in_t: float | None = None  # where the next pushed input is expected to start

    def push(self, samples: np.ndarray, sample_rate: int, t: float) -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"push_audio takes mono samples of shape (n,), got {x.shape}: average the channels")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if self.start_t is None:
            self.start_t = float(t)
        elif self._next_in_t is not None and t - self._next_in_t > self.max_gap_s:
            self._silence(int(round((t - self._next_in_t) * SAMPLE_RATE)))  # a dropout
        self._next_in_t = float(t) + len(x) / sample_rate
        if sample_rate != SAMPLE_RATE:
            x = self._resample(x, int(sample_rate))
        self._append(x)

    def _resample(self, x: np.ndarray, rate: int) -> np.ndarray:
        if self._rate != rate:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._rate = rate
        frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray()[0] for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def close(self) -> None:
        """No more input: take the samples the resampler still holds."""
        if self._resampler is not None:
            out = [f.to_ndarray()[0] for f in self._resampler.resample(None)]
            if out:
                self._append(np.concatenate(out))
            self._resampler, self._rate = None, None

    def _skip(self, n: int) -> None:
        """Move the clock on by ``n`` samples that will not be held: nothing older than them is kept."""
        if n > 0:
            self.end += n
            self.used = 0

    def _silence(self, n: int) -> None:
        """``n`` zero samples (a gap in the input), allocating at most the ring's capacity."""
        self._skip(n - self.capacity)
        self._append(np.zeros(min(n, self.capacity), np.float32))

    def _append(self, x: np.ndarray) -> None:
        if len(x) > self.capacity:  # only the newest `capacity` samples stay, but the clock moves by all
            self._skip(len(x) - self.capacity)
            x = x[-self.capacity:]
        if self.used + len(x) > len(self.data):  # move the newest `capacity - len(x)` samples to the front
            keep = self.capacity - len(x)
            self.data[:keep] = self.data[self.used - keep:self.used]
            self.used = keep
        self.data[self.used:self.used + len(x)] = x
        self.used += len(x)
        self.end += len(x)

    @property
    def clock(self) -> float:
        """Media time up to which samples have arrived (-inf before any)."""
        return -math.inf if self.start_t is None else self.start_t + self.end / SAMPLE_RATE

    def index(self, t: float) -> int:
        """Absolute index of the sample at media time ``t`` (the nearest)."""
        return int(round((t - self.start_t) * SAMPLE_RATE))

    def holds(self, first: int, n: int) -> bool:
        """Whether samples ``first`` to ``first + n`` (absolute indices) are all held."""
        return self.start_t is not None and first >= self.end - self.used and first + n <= self.end

    def read(self, first: int, n: int) -> np.ndarray | None:
        """Samples ``first`` to ``first + n`` (absolute indices), or None if not all are held."""
        if not self.holds(first, n):
            return None
        oldest = self.end - self.used
        return self.data[first - oldest:first - oldest + n].copy()


class LogMelRing:
    """The log-mel frames of an ``AudioRing``, each computed once.

    ``features.audio.log_mel`` frames lie wholly inside their window, so a window's spectrogram is the
    frames of the whole stream that fall in it, as long as windows start on the same hop phase
    (``log_mel_windows`` relies on the same fact for curation). Each update then computes only the frames
    new since the last one, with ``log_mel`` itself, and the same numbers come out (up to float rounding).
    A window on another phase starts the cache afresh.
    """

    def __init__(self, cfg: LogMelConfig, keep_s: float):
        self.cfg = cfg
        self.capacity = int(math.ceil(keep_s * SAMPLE_RATE / cfg.hop_length)) + 1
        self.columns = np.zeros((cfg.n_mels, self.capacity), np.float32)
        self.phase: int | None = None  # first sample of frame 0, modulo the hop
        self.done = 0  # frames before this index (on the phase's grid) are computed

    def window(self, audio: AudioRing, first: int, n_samples: int) -> np.ndarray | None:
        """The (n_mels, frames) log-mel of samples ``first`` to ``first + n_samples``, or None if not held."""
        hop, n = self.cfg.hop_length, self.cfg.frames(n_samples)
        if not audio.holds(first, n_samples):
            return None
        if self.phase != first % hop:
            self.phase, self.done = first % hop, 0
        j0 = (first - self.phase) // hop
        cached = j0 < self.done and self.done - self.capacity <= j0  # frames j0 .. done-1 are held
        j_new = min(self.done, j0 + n) if cached else j0
        if j_new < j0 + n:
            span = audio.read(self.phase + j_new * hop, (j0 + n - 1 - j_new) * hop + self.cfg.win_length)
            fresh = log_mel(span, self.cfg)
            self.columns[:, np.arange(j_new, j0 + n) % self.capacity] = fresh
            self.done = j0 + n
        return self.columns[:, np.arange(j0, j0 + n) % self.capacity]


class SlotRing:
    """Items (frames or landmarks) at ``fps`` slots from ``origin``; keeps the most recent ``keep`` slots."""

    def __init__(self, fps: float, origin: float, keep: int):
        self.fps, self.origin, self.keep = fps, origin, keep
        self.slots: deque = deque()
        self.first_slot = 0  # index of self.slots[0]
        self.next_slot: int | None = None  # the first slot not yet final
        self.first_t: float | None = None  # time of the first item
        self.last: tuple[float, object] | None = None  # (time, item) of the newest item
        self.step: float | None = None  # the newest interval between items

    def _slot_time(self, k: int) -> float:
        return self.origin + k / self.fps

    def push(self, item, t: float) -> None:
        if self.last is None:
            self.first_t = float(t)
            # the first slot this item can fill: the first whose time is at or after t
            self.next_slot = self.first_slot = math.ceil((t - _EPS - self.origin) * self.fps - 1e-9)
        else:
            if t <= self.last[0]:
                return  # out of order or repeated: the slot rule needs increasing times
            self.step = t - self.last[0]
            self._fill_before(t)
        self.last = (t, item)

    def _fill_before(self, t: float) -> None:
        """Give the newest item to every open slot whose time is before ``t`` (it was on show then)."""
        stop = math.ceil((t - _EPS - self.origin) * self.fps)  # about the first slot not before t
        if stop - self.next_slot > self.keep + 2:  # a long gap: only the last `keep` slots would be held
            self.slots.clear()
            self.next_slot = self.first_slot = stop - self.keep
        while self._slot_time(self.next_slot) + _EPS < t:
            self.slots.append(self.last[1])
            self.next_slot += 1
        while len(self.slots) > self.keep:
            self.slots.popleft()
            self.first_slot += 1

    def close(self) -> None:
        """No more items: the newest one is shown for one more interval (as curation assumes)."""
        if self.last is not None:
            self._fill_before(self.last[0] + (self.step or 1.0 / self.fps))

    @property
    def clock(self) -> float:
        """Media time up to which slots are final (-inf before any item)."""
        return -math.inf if self.next_slot is None else self._slot_time(self.next_slot)

    def window(self, t: float, n: int) -> list | None:
        """The ``n`` slots from media time ``t`` (nearest slot), or None if not all are final and held."""
        if self.next_slot is None:
            return None
        k = int(round((t - self.origin) * self.fps))
        if k < self.first_slot or k + n > self.next_slot:
            return None
        return [self.slots[i] for i in range(k - self.first_slot, k - self.first_slot + n)]


class Streams:
    """The engine's rings, one per input stream, on one media clock: ``audio`` (16 kHz samples),
    ``frames`` (frames at the contract's rate, brought to the video modality's size when there is one),
    and per kind of landmarks (``features.landmarks``), at the same rate: ``landmarks`` (hands), ``face``
    and ``blendshapes``, also by kind in ``by_kind``. Modalities read their windows from these
    (``Modality.live_window``); ``aspect`` is the picture's width / height, for landmarks."""

    def __init__(self, fps: float, origin: float, keep_s: float, quality, frame_config=None):
        self.audio = AudioRing(keep_s)
        self.frames = SlotRing(fps, origin, math.ceil(keep_s * fps))
        self.landmarks = SlotRing(fps, origin, math.ceil(keep_s * fps))
        self.face = SlotRing(fps, origin, math.ceil(keep_s * fps))
        self.blendshapes = SlotRing(fps, origin, math.ceil(keep_s * fps))
        self.by_kind = {"hands": self.landmarks, "face": self.face, "blendshapes": self.blendshapes}
        self.quality, self.frame_config = quality, frame_config
        self.aspect: float | None = None

    def rings(self) -> list:
        return [self.audio, self.frames, *self.by_kind.values()]

    def clocks(self) -> list[float]:
        return [r.clock for r in self.rings() if r.clock > -math.inf]

    def first_times(self) -> list[float]:
        return [s for s in (self.audio.start_t, *(r.first_t for r in self.rings()[1:])) if s is not None]

    def close(self) -> None:
        for r in self.rings():
            r.close()
