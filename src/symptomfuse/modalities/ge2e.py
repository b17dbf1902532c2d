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
from symptomfuse.modalities.audio import SoundMeasure
from symptomfuse.modalities.base import register


@register
class GE2EEmbedding(SoundMeasure):
    name = "ge2e"
    help = "pretrained GE2E voice embedding (Resemblyzer's speaker encoder, frozen) of the sound track"
    live_label = "voice embedding"

    # features.speaker (and torch with it) is imported where it is used: registering this modality must
    # not load torch into every curation worker

    def validate(self) -> None:
        from symptomfuse.features import speaker

        if self.timing.sample_rate != speaker.SAMPLE_RATE:
            raise UsageError(f"the GE2E embedding needs {speaker.SAMPLE_RATE} Hz audio")
        if self.timing.window_s < 1.0:
            raise UsageError("the GE2E embedding needs windows of at least 1 s (--window)")
        speaker.weights_path()  # installed, and the weights it was trained with

    def input_shape(self) -> tuple[int, ...]:
        from symptomfuse.features.speaker import DIM

        return (DIM,)

    def measure(self, samples: np.ndarray) -> np.ndarray:
        from symptomfuse.features.speaker import speaker_embedding

        return speaker_embedding(samples)
