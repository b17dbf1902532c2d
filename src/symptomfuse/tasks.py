"""The tasks a person performs in a guided session: say "aaah", smile, tap each hand.

A task is what a person does in front of the camera and microphone for a few seconds. Each modality
says which tasks it is measured on (``Modality.tasks``), so a model's guided session is the tasks of
its modalities, in the order below (``plan``): a voice model asks for a sustained vowel, a hand model
for tapping with each hand, a face model for smiles. The guided session itself (timing, collecting the
windows of each task, the session's result) is ``stream.guided``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Task:
    name: str  # short id, e.g. "voice"
    title: str  # what the page calls it
    instruction: str  # what the person is asked to do, in one or two sentences
    seconds: float  # how long the task is recorded
    order: int  # where it comes in a session (lowest first)
    camera: str | None = None  # landmarks that show the person is in place ("face", "hands"), if any

    def to_json(self) -> dict:
        return asdict(self)


VOICE = Task("voice", "Voice", 'Take a breath and sustain "aaah" at a comfortable pitch and loudness, '
             "as steadily as you can.", 6.0, 0)
SMILE = Task("smile", "Smile", "Look at the camera. Smile as widely as you can, relax, and smile again, "
             "until the countdown ends.", 6.0, 1, camera="face")
TAP_RIGHT = Task("tap_right", "Tapping, right hand", "Hold your right hand up in view of the camera and "
                 "tap your index finger on your thumb, as fast and as wide as you can.", 10.0, 2, camera="hands")
TAP_LEFT = Task("tap_left", "Tapping, left hand", "Now your left hand: hold it up in view of the camera "
                "and tap your index finger on your thumb, as fast and as wide as you can.", 10.0, 3, camera="hands")


@dataclass(frozen=True)
class Step:
    """One task of a session and the modalities (of the model) that are measured on it."""

    task: Task
    modalities: tuple[str, ...]

    def to_json(self) -> dict:
        return {**self.task.to_json(), "modalities": list(self.modalities)}


def plan(modalities: dict) -> list[Step]:
    """The guided session for bound modalities ``{name: Modality}``: each task that one of them is measured
    on, in task order, with the modalities measured on it. Empty when none has a task (a feature table)."""
    tasks: dict[str, tuple[Task, list[str]]] = {}
    for name, mod in modalities.items():
        for task in mod.tasks:
            tasks.setdefault(task.name, (task, []))[1].append(name)
    return [Step(task, tuple(names)) for task, names in sorted(tasks.values(), key=lambda tn: tn[0].order)]
