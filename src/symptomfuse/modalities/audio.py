"""Audio: the log-mel spectrogram of each window of the sound track (a sustained vowel, speech).

Feature function: ``features.audio.log_mel`` (curation computes a recording's windows at once with
``log_mel_windows``; live, ``stream.buffers.LogMelRing`` computes each frame once: the same numbers).
Gate: silence (below -50 dBFS) or no voice (too few voiced 40 ms frames). Augmentation of the prepared
log-mel (dB, (B, M, T)): gain, a noise floor relative to the sample's level, time shift, SpecAugment masks.

Also here: ``gated_sound`` (the live window of sound behind the audio gate) and ``SoundMeasure``, the
base of the modalities that compute one vector per window of sound with one function (``voice_measures``,
``ge2e``).
"""

from __future__ import annotations

import numpy as np

from symptomfuse.features.audio import LogMelConfig, log_mel_windows, mel_filterbank, rms_db
from symptomfuse.modalities.base import Modality, SourceMedia, register
from symptomfuse.errors import UsageError
from symptomfuse.tasks import VOICE


def _upper_quantile(x: "torch.Tensor", q: float) -> "torch.Tensor":
    """``torch.quantile(x, q, dim=1)`` (linear interpolation), the same bits, for q near 1: from the top
    values only (``topk``) instead of sorting whole rows, ten times faster on a batch of spectrograms."""
    import torch

    n = x.shape[1]
    rank = torch.tensor(q, dtype=x.dtype) * (n - 1)  # as torch.quantile computes it
    below, above = int(rank), int(torch.ceil(rank))
    top = torch.topk(x, n - below, dim=1).values  # descending: sorted position i is column n - 1 - i
    return torch.lerp(top[:, -1], top[:, n - 1 - above], rank - below)


def augment_logmel(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    import torch  # here, not at import: curation workers never load torch

    b, m, t = x.shape
    x = x + (torch.rand(b, 1, 1, generator=g) * 12 - 6)  # gain +-6 dB
    # a noise floor 60-80 dB below the sample's loudest bins (levels differ a lot between data sets)
    peak = _upper_quantile(x.reshape(b, -1), 0.99).view(b, 1, 1)
    floor = peak - 60 - torch.rand(b, 1, 1, generator=g) * 20
    noisy = torch.rand(b, 1, 1, generator=g) < 0.5  # half the samples keep their own (clean) floor
    x = torch.where(noisy, 10 * torch.log10(10 ** (x / 10) + 10 ** (floor / 10)), x)
    shift = int(torch.randint(-t // 10, t // 10 + 1, (1,), generator=g))
    x = torch.roll(x, shift, dims=2)
    fill = x.mean(dim=(1, 2), keepdim=True)
    for _ in range(2):
        f0 = torch.randint(0, m, (b, 1, 1), generator=g)
        fw = torch.randint(0, max(1, m // 8), (b, 1, 1), generator=g)
        t0 = torch.randint(0, t, (b, 1, 1), generator=g)
        tw = torch.randint(0, max(1, t // 10), (b, 1, 1), generator=g)
        fm = (torch.arange(m).view(1, m, 1) >= f0) & (torch.arange(m).view(1, m, 1) < f0 + fw)
        tm = (torch.arange(t).view(1, 1, t) >= t0) & (torch.arange(t).view(1, 1, t) < t0 + tw)
        x = torch.where(fm | tm, fill, x)
    return x


@register
class Audio(Modality):
    name = "audio"
    source = "audio"
    needs = ("audio",)
    help = "log-mel spectrogram of the sound track"
    default_encoder = "logmel_cnn"
    Settings = LogMelConfig
    live_label = "voice"
    tasks = (VOICE,)
    live_qualities = ("ok", "silence", "no_voice", "no_data")
    augmentations = {"logmel": augment_logmel}
    options = {"--n-mels": (lambda text: {"n_mels": int(text)}, "mel bands of the audio features (default 64)")}

    def validate(self) -> None:
        if self.settings.sample_rate != self.timing.sample_rate:
            raise UsageError(f"audio features at {self.settings.sample_rate} Hz are not supported "
                             f"(only {self.timing.sample_rate} Hz)")
        n_mels = self.settings.n_mels
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
            raise UsageError(f"--n-mels must be a whole number, at least 1, got {n_mels!r}")
        self._check_spectrum()
        bins, spectrum = self.settings.n_fft // 2 + 1, f"{self.settings.n_fft}-point spectrum; use fewer (64 by default)"
        if self.settings.n_mels > bins:
            raise UsageError(f"--n-mels {self.settings.n_mels}: more mel bands than the {bins} frequency bins of the "
                             f"{spectrum}")
        empty = int((mel_filterbank(self.settings).max(axis=1) == 0).sum())
        if empty:
            raise UsageError(f"--n-mels {self.settings.n_mels}: {empty} mel band(s) would hold none of the {bins} "
                             f"frequency bins of the {spectrum}")
        if self.settings.frames(self.timing.window_samples()) < 1:
            raise UsageError("--window is shorter than one spectrogram frame")

    def _check_spectrum(self) -> None:
        """The spectrogram's settings that no flag sets, as a stored contract (contract.json, export.json) could
        hold them: whole sizes that fit one another, a band inside the audible half of the sample rate, a
        floor in decibels below 0."""
        s = self.settings
        sizes = {"n_fft": s.n_fft, "win_length": s.win_length, "hop_length": s.hop_length}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16384:
                raise UsageError(f"audio setting {name} must be a whole number from 1 to 16384, got {value!r}")
        if s.win_length > s.n_fft:
            raise UsageError(f"audio setting win_length {s.win_length} is longer than n_fft {s.n_fft}")
        numbers = {"f_min": s.f_min, "f_max": s.f_max, "floor_db": s.floor_db}
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers.values()):
            raise UsageError(f"audio settings f_min, f_max and floor_db must be numbers, got {numbers}")
        if not 0 <= s.f_min < s.f_max <= s.sample_rate / 2:
            raise UsageError(f"audio settings f_min {s.f_min} and f_max {s.f_max} Hz must satisfy 0 <= f_min < f_max <= "
                             f"{s.sample_rate / 2:g} (half the sample rate)")
        if not -300 <= s.floor_db < 0:
            raise UsageError(f"audio setting floor_db must be from -300 to 0 dB, got {s.floor_db}")

    def input_shape(self) -> tuple[int, ...]:
        return (self.settings.n_mels, self.settings.frames(self.timing.window_samples()))

    def encoder_args(self) -> dict:
        return {"n_mels": self.settings.n_mels}

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        n = self.timing.window_samples()
        first = np.round(starts * self.timing.sample_rate).astype(np.int64)
        if len(first) == 0:
            return {"audio": np.zeros((0, *self.input_shape()), np.float32), "audio_rms_db": np.zeros(0)}
        a = int(first.min())
        span = np.asarray(media.audio[a:int(first.max()) + n])  # the samples these windows cover, read once
        return {"audio": log_mel_windows(span, first - a, n, self.settings),
                "audio_rms_db": np.array([rms_db(span[s - a:s - a + n]) for s in first], np.float64)}

    def summaries(self, arrays, starts) -> dict[str, list[float]]:
        return {"audio_rms_db": [float(v) for v in arrays["audio_rms_db"]]}

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        """Mean and standard deviation of each mel band over the window."""
        return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)

    def live_state(self, keep_s: float):
        from symptomfuse.stream.buffers import LogMelRing

        return LogMelRing(self.settings, keep_s)

    def live_window(self, streams, state, start, wanted):
        quality, first, _ = gated_sound(self, streams, start)
        if quality != "ok" or not wanted:
            return quality, None
        return quality, state.window(streams.audio, first, self.timing.window_samples())[None]


def gated_sound(mod: Modality, streams, start: float) -> tuple[str, int | None, np.ndarray | None]:
    """The live engine's window of sound from ``start``: (its quality gate's answer, its first sample's
    index in the ring, the samples); the gate is silence or no voice."""
    from symptomfuse.stream.quality import audio_quality

    ring, n = streams.audio, mod.timing.window_samples()
    first = None if ring.start_t is None else ring.index(start)
    samples = None if first is None else ring.read(first, n)
    quality = "no_data" if samples is None else audio_quality(samples, streams.quality)
    return quality, first, samples


class SoundMeasure(Modality):
    """A modality computed from each window of the sound track by one function, ``measure`` (a vector),
    offline on every window and live on the engine's last window, behind the audio gate. Subclasses
    (``voice_measures``, ``ge2e``) give ``measure``, ``input_shape`` and their settings."""

    source = "audio"
    needs = ("audio",)
    default_encoder = "mlp"
    curated_by_default = False
    live_qualities = ("ok", "silence", "no_voice", "no_data")
    tasks = (VOICE,)

    def measure(self, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encoder_args(self) -> dict:
        return {"n_features": self.input_shape()[0]}

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        n = self.timing.window_samples()
        first = np.round(starts * self.timing.sample_rate).astype(np.int64)
        rows = [self.measure(media.audio[s:s + n]) for s in first]
        return {self.name: np.asarray(rows, np.float32).reshape(len(first), *self.input_shape())}

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        return x

    def live_window(self, streams, state, start, wanted):
        quality, _, samples = gated_sound(self, streams, start)
        if quality != "ok" or not wanted:
            return quality, None
        return quality, np.asarray(self.measure(samples), np.float32)[None]
