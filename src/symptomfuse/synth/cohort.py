"""The synthetic cohort: people, their signs, and their recordings as real MP4 files.

Every person gets a voice (sex-dependent F0 and formants, natural perturbation) and a hand (placement,
skin tone, background, lighting, camera noise). People with the condition are split by phenotype into
those with voice signs only, movement signs only, or both (``SynthConfig.phenotypes``); each sign has a
severity drawn between ``severity_range``, so mild cases overlap healthy people. Neither modality alone
can therefore find everyone, and fusing both has something to gain.

Each recording is an MP4 (H.264 video + AAC audio): a sustained /a/ on the sound track while the hand
rests and then taps. Beside it: the ground-truth hand landmarks (``.keypoints.npy``, float32 of shape
(frames, 21, 3), normalised like MediaPipe's) and a ``.json`` with the generative parameters.

With ``tasks="separate"`` the two tasks are recorded apart, as real studies do: a voice recording
(``_voice.m4a``, AAC only) and a hand recording (``_hand.mp4``, H.264 only, with its landmarks), listed on
separate manifest rows with a ``task`` column; a share of the people (``missing_task``) lack one of the
two tasks altogether. The signals are the same as in the time-aligned recordings of the same seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import numpy as np
import pandas as pd

from symptomfuse.atomic import atomic_path, atomic_write_text, check_out_folder
from symptomfuse.errors import UsageError
from symptomfuse.parallel import run_jobs
from symptomfuse.synth.hand import HandParams, HandRenderer, SceneParams, hand_trajectory, to_image_coords
from symptomfuse.synth.voice import VoiceParams, synth_vowel

HEALTHY, CONDITION = "healthy", "parkinsons"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a cohort. Same config and seed, same files."""

    people: int = 48
    seed: int = 0
    recordings_per_person: int = 3
    duration_s: float = 8.0
    fps: int = 25
    width: int = 320
    height: int = 240
    audio_rate: int = 24000
    condition_fraction: float = 0.5
    # Share of people with the condition showing voice signs only, movement signs only, or both.
    phenotypes: dict = field(default_factory=lambda: {"voice": 0.35, "movement": 0.35, "both": 0.30})
    severity_range: tuple = (0.2, 1.0)
    tasks: str = "together"  # "together": one A/V file a session; "separate": a voice file and a hand file
    missing_task: float = 0.2  # with separate tasks: share of people who lack one task (half each way)

    def validate(self) -> None:
        if self.tasks not in ("together", "separate"):
            raise UsageError(f"--tasks must be together or separate, got {self.tasks!r}")
        if not 0.0 <= self.missing_task < 1.0:
            raise UsageError("--missing-task must lie in [0, 1)")
        if self.people < 2:
            raise UsageError("--people must be at least 2 (one healthy person and one with the condition)")
        if self.recordings_per_person < 1:
            raise UsageError("--recordings must be at least 1")
        if self.duration_s < 6.0:
            raise UsageError("--duration must be at least 6 s (rest, then tapping, each long enough to see)")
        if self.fps < 25:
            raise UsageError("--fps must be at least 25, or 8-12 Hz physiological tremor aliases")
        if not (160 <= self.width <= 1920 and 120 <= self.height <= 1920) or self.width % 2 or self.height % 2:
            raise UsageError(f"--size {self.width}x{self.height}: width and height must be even (H.264's 4:2:0 "
                             "needs it), at least 160x120 and at most 1920 on a side")
        if not 0.0 < self.condition_fraction < 1.0:
            raise UsageError("--condition-fraction must lie strictly between 0 and 1")
        shares = self.phenotypes
        if set(shares) != {"voice", "movement", "both"} or any(v < 0 for v in shares.values()) \
                or abs(sum(shares.values()) - 1.0) > 1e-6:
            raise UsageError(f"phenotype shares must be voice, movement, both >= 0 summing to 1; got {shares}")
        lo, hi = self.severity_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise UsageError(f"severity range must satisfy 0 <= lo <= hi <= 1; got {self.severity_range}")


@dataclass(frozen=True)
class Person:
    person_id: str
    label: str
    sex: str
    phenotype: str  # none, voice, movement or both
    voice_severity: float
    movement_severity: float
    voice: VoiceParams
    hand: HandParams
    skin_rgb: tuple
    background_rgb: tuple
    hand_scale: float  # hand length as a fraction of the frame height
    tilt: float
    noise_sigma: float


def _counts(total: int, shares: dict) -> dict:
    """Split ``total`` by ``shares`` with largest-remainder rounding (deterministic)."""
    raw = {k: total * v for k, v in shares.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def sample_people(cfg: SynthConfig) -> list[Person]:
    """Draw every person's label, phenotype and generative parameters."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_cond = int(round(cfg.condition_fraction * cfg.people))
    n_cond = min(max(n_cond, 1), cfg.people - 1)
    phenos = [p for p, c in _counts(n_cond, cfg.phenotypes).items() for _ in range(c)]
    phenos += ["none"] * (cfg.people - n_cond)
    phenos = [phenos[i] for i in rng.permutation(cfg.people)]
    lo, hi = cfg.severity_range
    people = []
    for i, pheno in enumerate(phenos):
        r = np.random.default_rng([cfg.seed, 1, i])
        sex = "female" if r.random() < 0.5 else "male"
        sv = r.uniform(lo, hi) if pheno in ("voice", "both") else 0.0
        sm = r.uniform(lo, hi) if pheno in ("movement", "both") else 0.0
        f0 = r.uniform(165, 245) if sex == "female" else r.uniform(88, 150)
        voice = VoiceParams(
            f0_hz=f0,
            formant_scale=r.uniform(1.12, 1.22) if sex == "female" else r.uniform(0.95, 1.05),
            jitter=r.lognormal(np.log(0.003), 0.25) + sv * 0.007,
            shimmer=r.lognormal(np.log(0.022), 0.25) + sv * 0.04,
            noise_ratio=r.lognormal(np.log(0.004), 0.3) + sv * 0.016,
            tremor_hz=r.uniform(4.0, 7.0) if sv > 0 else 0.0,
            tremor_depth=sv * 0.012,
            open_quotient=r.uniform(0.5, 0.7),
        )
        tap_hz = r.uniform(3.0, 4.5)
        hand = HandParams(
            rest_tremor_hz=r.uniform(4.0, 6.0) if sm > 0 else 0.0,
            rest_tremor_amp=0.012 + 0.04 * sm if sm > 0 else 0.0,
            physio_tremor_hz=r.uniform(8.0, 12.0),
            physio_tremor_amp=r.uniform(0.002, 0.005),
            tap_hz=tap_hz * (1.0 - 0.45 * sm),
            tap_amplitude=r.uniform(0.75, 1.0) * (1.0 - 0.3 * sm),
            tap_decrement=r.uniform(0.0, 0.12) + 0.5 * sm,
            hesitation_rate=0.5 * sm,
        )
        tone = r.uniform(0, 1)
        skin = np.array([235, 200, 175]) * (1 - tone) + np.array([105, 68, 45]) * tone
        skin = skin * r.uniform(0.94, 1.06, 3)
        people.append(Person(
            person_id=f"P{i + 1:03d}",
            label=HEALTHY if pheno == "none" else CONDITION,
            sex=sex,
            phenotype=pheno,
            voice_severity=float(sv),
            movement_severity=float(sm),
            voice=voice,
            hand=hand,
            skin_rgb=tuple(int(v) for v in np.clip(skin, 0, 255)),
            background_rgb=tuple(int(v) for v in r.uniform(40, 200, 3)),
            hand_scale=float(r.uniform(0.5, 0.68)),
            tilt=float(r.uniform(-0.2, 0.2)),
            noise_sigma=float(r.uniform(1.5, 6.0)),
        ))
    return people


def _session_params(person: Person, cfg: SynthConfig, rng: np.random.Generator):
    """Per-recording variation: a voice is never quite the same twice, nor is a camera set-up."""
    v = person.voice
    voice = replace(v, f0_hz=v.f0_hz * rng.uniform(0.96, 1.04), jitter=v.jitter * rng.uniform(0.85, 1.15),
                    shimmer=v.shimmer * rng.uniform(0.85, 1.15), noise_ratio=v.noise_ratio * rng.uniform(0.85, 1.15))
    scene = SceneParams(
        width=cfg.width, height=cfg.height,
        wrist_x=float(rng.uniform(0.4, 0.6)), wrist_y=float(rng.uniform(0.85, 0.95)),
        hand_px=float(person.hand_scale * cfg.height * rng.uniform(0.93, 1.07)),
        tilt=float(person.tilt + rng.uniform(-0.08, 0.08)),
        skin_rgb=person.skin_rgb,
        background_rgb=tuple(int(np.clip(c * rng.uniform(0.9, 1.1), 0, 255)) for c in person.background_rgb),
        gain=float(rng.uniform(0.75, 1.15)),
        noise_sigma=person.noise_sigma,
    )
    rest_until = float(cfg.duration_s * rng.uniform(0.45, 0.55))
    return voice, scene, rest_until


def write_av(path: Path, frames, audio: np.ndarray | None, fps: int, audio_rate: int, width: int, height: int
             ) -> None:
    """Encode RGB frames (an iterable of (H, W, 3) uint8, or None for none) and mono float audio (or None)
    into an MP4 (H.264 + AAC), interleaved, with the index at the front so that a truncated file is still
    recognisable."""
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            streams = []
            if frames is not None:
                vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23", "threads": "1"})
                vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
                streams.append(vs)
            if audio is not None:
                aus = out.add_stream("aac", rate=audio_rate, layout="mono")
                aus.bit_rate = 96000
                streams.append(aus)
            per_frame = audio_rate // fps
            n_chunks = -(-len(audio) // per_frame) if audio is not None else 0
            images = iter(frames) if frames is not None else iter(())
            i = 0
            while True:
                img = next(images, None)
                if img is None and i >= n_chunks:
                    break
                if img is not None:
                    for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        out.mux(packet)
                chunk = audio[i * per_frame:(i + 1) * per_frame] if audio is not None else ()
                if len(chunk) and (frames is None or img is not None):
                    af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                    af.sample_rate, af.pts = audio_rate, i * per_frame
                    for packet in aus.encode(af):
                        out.mux(packet)
                i += 1
            for stream in streams:
                for packet in stream.encode():
                    out.mux(packet)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def make_recording(person: Person, session: int, cfg: SynthConfig, out_dir: Path,
                   tasks: tuple = ("voice", "hand")) -> list[dict]:
    """Render one session of ``person`` and write its media, keypoints and parameters: one A/V file, or
    with ``cfg.tasks == "separate"`` a file per task in ``tasks``. Returns its manifest rows."""
    index = int(person.person_id[1:])
    rng = np.random.default_rng([cfg.seed, 2, index, session])
    voice, scene, rest_until = _session_params(person, cfg, rng)
    stem = f"{person.person_id}_s{session}"
    audio = synth_vowel(voice, cfg.duration_s, cfg.audio_rate, rng)
    traj = hand_trajectory(person.hand, cfg.duration_s, cfg.fps, rest_until, rng)
    landmarks = to_image_coords(traj, scene)
    renderer = HandRenderer(scene, rng)
    frames = (renderer.render(kp) for kp in landmarks)
    separate = cfg.tasks == "separate"
    base = {"person_id": person.person_id, "label": person.label, "session": session, "sex": person.sex,
            "phenotype": person.phenotype}
    if not separate:
        rows = [{"path": f"recordings/{stem}.mp4", **base, "keypoints": f"recordings/{stem}.keypoints.npy"}]
        write_av(out_dir / f"{stem}.mp4", frames, audio, cfg.fps, cfg.audio_rate, cfg.width, cfg.height)
        kp_file = f"{stem}.keypoints.npy"
    else:
        rows = []
        if "voice" in tasks:
            write_av(out_dir / f"{stem}_voice.m4a", None, audio, cfg.fps, cfg.audio_rate, cfg.width, cfg.height)
            rows.append({"audio_path": f"recordings/{stem}_voice.m4a", "video_path": "", "keypoints": "",
                         "task": "voice", **base})
        if "hand" in tasks:
            write_av(out_dir / f"{stem}_hand.mp4", frames, None, cfg.fps, cfg.audio_rate, cfg.width, cfg.height)
            rows.append({"audio_path": "", "video_path": f"recordings/{stem}_hand.mp4",
                         "keypoints": f"recordings/{stem}_hand.keypoints.npy", "task": "hand", **base})
        kp_file = f"{stem}_hand.keypoints.npy" if "hand" in tasks else None
    if kp_file is not None:
        with atomic_path(out_dir / kp_file) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, landmarks, allow_pickle=False)
    meta = {"recording": stem, "session": session, "person": asdict(person), "voice": asdict(voice),
            "scene": asdict(scene), "rest_until_s": rest_until, "duration_s": cfg.duration_s, "fps": cfg.fps,
            "audio_rate": cfg.audio_rate, "keypoints_layout": "frames x 21 MediaPipe hand landmarks x (x, y, z)"}
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(_jsonable(meta), indent=1))
    return rows


def task_plan(people: list[Person], cfg: SynthConfig) -> dict[str, tuple]:
    """Which tasks each person recorded: both, or with ``tasks="separate"`` a ``missing_task`` share of
    people (drawn with the seed) with only one, half missing the voice task and half the hand task."""
    plan = {p.person_id: ("voice", "hand") for p in people}
    if cfg.tasks != "separate" or cfg.missing_task <= 0:
        return plan
    rng = np.random.default_rng([cfg.seed, 3])
    n = int(round(cfg.missing_task * len(people)))
    chosen = rng.permutation(len(people))[:n]
    for j, i in enumerate(chosen):
        plan[people[i].person_id] = ("hand",) if j % 2 == 0 else ("voice",)
    return plan


def _make_recording_job(args):
    return make_recording(*args)


OUTPUTS = ("recordings", "manifest.csv", "people.json")  # what synth writes into --out, and nothing else


def synthesize(cfg: SynthConfig, out: Path, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Write the whole cohort under ``out`` and return its manifest (also saved as manifest.csv)."""
    cfg.validate()
    out = Path(out)
    check_out_folder(out, OUTPUTS, "synth")
    rec_dir = out / "recordings"
    rec_dir.mkdir(parents=True, exist_ok=True)
    people = sample_people(cfg)
    plan = task_plan(people, cfg)
    jobs = [(p, s, cfg, rec_dir, plan[p.person_id]) for p in people for s in range(1, cfg.recordings_per_person + 1)]
    rows = run_jobs(_make_recording_job, jobs, workers, "synth", progress)
    manifest = pd.DataFrame([r for session in rows for r in session])
    atomic_write_text(out / "manifest.csv", manifest.to_csv(index=False))
    atomic_write_text(out / "people.json", json.dumps(_jsonable(
        {"config": asdict(cfg), "people": [asdict(p) for p in people]}), indent=1))
    return manifest
