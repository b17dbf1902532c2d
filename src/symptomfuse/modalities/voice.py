"""Voice measures: the clinical measures of each window of the sound track, one vector per window.

Feature function: ``features.voice.voice_measures`` (F0 statistics, jitter, shimmer, HNR, NHR, RPDE,
DFA, PPE, MFCC statistics: the measures of Little et al. that the UCI Parkinsons table holds), called by
curation on each window and by the live engine on the last window of the microphone: the same numbers.
Curated only when named (``curate --modalities audio,voice_measures``; the name leaves ``voice`` free
for a user's own table): Praat's analysis costs about a tenth of
a second per 3-s window. Encoder: ``mlp`` (NaN, e.g. jitter of an unvoiced window, is imputed with
training statistics and flagged). Gate: the audio gate (silence, no voice).
"""

from __future__ import annotations

import numpy as np

from symptomfuse.errors import UsageError
from symptomfuse.features.voice import NAMES, VoiceConfig, voice_measures
from symptomfuse.modalities.audio import SoundMeasure
from symptomfuse.modalities.base import register


def _f0_range(text: str) -> dict:
    low, _, high = text.partition("-")
    return {"f0_min": float(low), "f0_max": float(high)}


@register
class Voice(SoundMeasure):
    name = "voice_measures"
    help = "clinical voice measures (jitter, shimmer, HNR, RPDE, DFA, PPE, MFCC statistics) of the sound track"
    Settings = VoiceConfig
    live_label = "voice measures"
    options = {"--f0-range": (_f0_range, "pitch range of the voice measures in Hz, e.g. 75-500 (default)")}

    def validate(self) -> None:
        s = self.settings
        if not (20 <= s.f0_min < s.f0_max <= 2000):
            raise UsageError(f"--f0-range must be LOW-HIGH with 20 <= LOW < HIGH <= 2000 Hz, got {s.f0_min}-{s.f0_max}")
        if s.sample_rate != self.timing.sample_rate:
            raise UsageError(f"voice measures at {s.sample_rate} Hz are not supported (only {self.timing.sample_rate} Hz)")
        if self.timing.window_s < 0.5:
            raise UsageError("voice measures need windows of at least 0.5 s (--window)")

    def input_shape(self) -> tuple[int, ...]:
        return (len(NAMES),)

    def feature_names(self) -> tuple[str, ...]:
        return NAMES

    def measure(self, samples: np.ndarray) -> np.ndarray:
        return voice_measures(samples, self.settings)
