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
from symptomfuse.modalities.audio import SoundMeasure
from symptomfuse.modalities.base import register


@register
class GE2EEmbedding(SoundMeasure):
    name = "ge2e"
    help = "pretrained GE2E voice embedding (Resemblyzer's speaker encoder, frozen) of the sound track"
    live_label = "voice embedding"

    def validate(self) -> None:
        if self.timing.sample_rate != SAMPLE_RATE:
            raise UsageError(f"the GE2E embedding needs {SAMPLE_RATE} Hz audio")
        if self.timing.window_s < 1.0:
            raise UsageError("the GE2E embedding needs windows of at least 1 s (--window)")
        weights_path()  # installed, and the weights it was trained with

    def input_shape(self) -> tuple[int, ...]:
        return (DIM,)

    def measure(self, samples: np.ndarray) -> np.ndarray:
        return speaker_embedding(samples)
