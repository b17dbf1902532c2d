"""GE2E: a pretrained voice embedding of each window of the sound track (Resemblyzer's speaker encoder,
frozen; 256 numbers per window).

Feature function: ``features.speaker.speaker_embedding``, called by curation on each window and by the
live engine on the last window of the microphone: the same numbers. The network is pretrained and
frozen, so its output is the feature; the model trained on it is a small head (the ``mlp`` encoder,
dropout included). Curated only when named (``curate --modalities audio,ge2e``). Gate: the audio gate.
"""

from __future__ import annotations

import numpy as np

from symptomfuse.errors import UsageError
from symptomfuse.features.speaker import DIM, SAMPLE_RATE, speaker_embedding, weights_path
from symptomfuse.modalities.base import Modality, SourceMedia, register


@register
class GE2EEmbedding(Modality):
    name = "ge2e"
    source = "audio"
    needs = ("audio",)
    help = "pretrained GE2E voice embedding (Resemblyzer's speaker encoder, frozen) of the sound track"
    default_encoder = "mlp"
    curated_by_default = False
    live_label = "voice embedding"
    live_qualities = ("ok", "silence", "no_voice", "no_data")

    def validate(self) -> None:
        if self.timing.sample_rate != SAMPLE_RATE:
            raise UsageError(f"the GE2E embedding needs {SAMPLE_RATE} Hz audio")
        if self.timing.window_s < 1.0:
            raise UsageError("the GE2E embedding needs windows of at least 1 s (--window)")
        weights_path()  # installed, and the weights it was trained with

    def input_shape(self) -> tuple[int, ...]:
        return (DIM,)

    def encoder_args(self) -> dict:
        return {"n_features": DIM}

    def extract(self, media: SourceMedia, starts: np.ndarray) -> dict[str, np.ndarray]:
        n = self.timing.window_samples()
        first = np.round(starts * self.timing.sample_rate).astype(np.int64)
        rows = [speaker_embedding(media.audio[s:s + n]) for s in first]
        return {self.name: np.asarray(rows, np.float32).reshape(len(first), DIM)}

    def baseline_features(self, x: np.ndarray) -> np.ndarray:
        return x

    def live_window(self, streams, state, start, wanted):
        from symptomfuse.stream.quality import audio_quality

        ring, n = streams.audio, self.timing.window_samples()
        first = None if ring.start_t is None else ring.index(start)
        samples = None if first is None else ring.read(first, n)
        quality = "no_data" if samples is None else audio_quality(samples, streams.quality)
        if quality != "ok" or not wanted:
            return quality, None
        return quality, speaker_embedding(samples)[None]
