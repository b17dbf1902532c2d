"""A small live model for the browser test, built in well under a minute.

A voice-only cohort: the synthetic voice generator's sustained /a/ (``symptomfuse.synth``; healthy people
and people with voice signs) plus real speech labelled healthy (the 6 FSDD speakers shipped in data/fsdd,
digits strung together), curated, trained (audio ``logmel_cnn``, 2 person-grouped folds) and exported with
the same commands a user runs.

Why the real speech: a model that has only ever heard sustained vowels calls any normal speech
condition-like (measured: p = 1.00 on every GRID clip), because speech is far more irregular than a held
vowel. The browser test compares a real talking-face clip (GRID, not in training; different speakers)
with a synthetic vowel with voice signs, so the model must have heard healthy speech. Video is left out
on purpose: rendering and training on video would take minutes.
"""

from __future__ import annotations

import csv
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from symptomfuse.synth.cohort import SynthConfig, sample_people
from symptomfuse.synth.voice import synth_vowel

RATE = 16000


def _write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return x, w.getframerate()


def _speech(fsdd: Path, speaker: str, take: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Digits 0-9 of one FSDD speaker and take, resampled to 16 kHz, with short pauses, ``seconds`` long."""
    from scipy.signal import resample_poly

    parts, n = [], int(seconds * RATE)
    for digit in rng.permutation(10):
        x, rate = _read_wav(fsdd / f"{digit}_{speaker}_{take}.wav")
        parts += [resample_poly(x, RATE, rate).astype(np.float32), np.zeros(int(rng.uniform(0.05, 0.2) * RATE), np.float32)]
        if sum(map(len, parts)) >= n:
            break
    x = np.concatenate(parts)[:n]
    x = np.pad(x, (0, n - len(x)))
    return x / (np.abs(x).max() + 1e-6) * rng.uniform(0.5, 0.9)


def voice_cohort(out: Path, people: int = 24, recordings: int = 2, seconds: float = 6.0, seed: int = 5,
                 fsdd: Path | None = Path(__file__).parents[2] / "data" / "fsdd" / "recordings") -> Path:
    """WAVs of sustained /a/ (half the people with voice signs) and of real healthy speech (FSDD speakers),
    and a manifest with audio_path."""
    cfg = SynthConfig(people=people, seed=seed, condition_fraction=0.5,
                      phenotypes={"voice": 1.0, "movement": 0.0, "both": 0.0})
    rows = []
    (out / "wav").mkdir(parents=True, exist_ok=True)
    for person in sample_people(cfg):
        for s in range(recordings):
            rng = np.random.default_rng([seed, 9, int(person.person_id[1:]), s])
            v = person.voice   # a voice is never quite the same twice
            v = replace(v, f0_hz=v.f0_hz * rng.uniform(0.96, 1.04), jitter=v.jitter * rng.uniform(0.85, 1.15),
                        shimmer=v.shimmer * rng.uniform(0.85, 1.15),
                        noise_ratio=v.noise_ratio * rng.uniform(0.85, 1.15))
            x = synth_vowel(v, seconds, RATE, rng) * rng.uniform(0.5, 1.0)
            name = f"wav/{person.person_id}_s{s}.wav"
            _write_wav(out / name, x)
            rows.append({"audio_path": name, "person_id": person.person_id, "label": person.label, "session": s})
    if fsdd is not None:
        speakers = sorted({p.stem.split("_")[1] for p in fsdd.glob("*.wav")})
        for k, speaker in enumerate(speakers):
            for s in range(recordings):
                rng = np.random.default_rng([seed, 10, k, s])
                name = f"wav/fsdd_{speaker}_s{s}.wav"
                _write_wav(out / name, _speech(fsdd, speaker, s, seconds, rng))
                rows.append({"audio_path": name, "person_id": f"fsdd_{speaker}", "label": "healthy", "session": s})
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out / "manifest.csv"


def _face_variant(src: Path, dst: Path, k: int) -> None:
    """A video-only copy of ``src`` that differs in its bytes (curation refuses duplicate recordings): mirrored
    or not, a little brighter or darker, and starting a few frames later (the skipped frames go to the end)."""
    import av

    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    start = 3 * (k % 5)
    frames = frames[start:] + frames[:start]
    gain = 0.85 + 0.3 * (k % 7) / 6
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for img in frames:
            img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            if k % 2:
                img = np.ascontiguousarray(img[:, ::-1])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def guided_cohort(out: Path, face_clip: Path, people: int = 16, recordings: int = 2, seconds: float = 5.0,
                  seed: int = 5) -> Path:
    """``voice_cohort`` plus a "smile" task for everyone: a video-only row per person (``task`` column), which
    gives a model of two separately recorded tasks (train --unit person). Every smile recording is a variant
    of the same real GRID face clip (``_face_variant``), so the face model learns nothing about the labels:
    the guided browser test checks the mechanics (two tasks, face landmarks found and drawn, one session
    result), not what the face says."""
    import pandas as pd

    manifest = voice_cohort(out, people=people, recordings=recordings, seconds=seconds, seed=seed)
    rows = pd.read_csv(manifest, keep_default_na=False)
    rows["task"], rows["video_path"] = "voice", ""
    smiles = []
    (out / "face").mkdir(exist_ok=True)
    for k, (person, label) in enumerate(rows.groupby("person_id").label.first().items()):
        name = f"face/{person}_smile.mp4"
        _face_variant(face_clip, out / name, k)
        smiles.append({"audio_path": "", "video_path": name, "person_id": person, "label": label, "session": 0,
                       "task": "smile"})
    pd.concat([rows, pd.DataFrame(smiles)], ignore_index=True).to_csv(manifest, index=False)
    return manifest


def browser_feeds(root: Path, grid_clip: Path) -> dict[str, tuple[Path, Path]]:
    """The browser tests' two inputs as y4m + WAV (``headless.to_y4m_wav``): the real GRID talking face
    ("grid") and a synthetic person with voice signs (phenotype "both"), made with another generator seed
    than any training cohort, so never seen in training ("cond")."""
    import pandas as pd

    from headless import to_y4m_wav
    from symptomfuse.cli import main as cli

    assert cli(["synth", "--out", str(root / "synth"), "--people", "2", "--seed", "131", "--recordings", "1",
                "--voice-only", "0", "--movement-only", "0", "--both", "1", "--workers", "1"]) == 0
    rows = pd.read_csv(root / "synth" / "manifest.csv")
    cond = rows[rows.phenotype.isin(["voice", "both"])].iloc[0]
    return {"grid": to_y4m_wav(grid_clip, root / "media", "grid"),
            "cond": to_y4m_wav(root / "synth" / cond.path, root / "media", "cond")}
