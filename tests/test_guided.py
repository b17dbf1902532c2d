"""The guided session (``stream.guided``): its timeline, which windows each task takes, and its result
against the same computation done by hand on the offline (curated) windows. The model is test_stream's
small random-weight export; the recording a synthetic person's 14 s, voice and hand at once."""

import shutil
from dataclasses import replace

import av
import numpy as np
import pytest

from symptomfuse import NOTICE
from symptomfuse.data.curate import curate
from symptomfuse.data.dataset import load_curated
from symptomfuse.errors import UsageError
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.engine import StreamEngine, shown_p
from symptomfuse.stream.export import export_models
from symptomfuse.stream.guided import GuidedSession
from symptomfuse.stream.sources import replay_file
from symptomfuse.synth.cohort import SynthConfig, synthesize
from symptomfuse.tasks import SMILE, TAP_RIGHT, VOICE, Step, plan
from test_stream import CLASSES, _models

# voice: prepare [0, 1), record [1, 6); tapping: prepare [6, 7), record [7, 12) (the shortest a step records
# is a window and two updates: 3 + 2 x 1 s). With updates every 1 s the engine's windows start on the
# curated windows' grid (hop 1 s), so each is an offline window too.
STEPS = [Step(replace(VOICE, seconds=4.0), ("audio",)), Step(replace(TAP_RIGHT, seconds=5.0), ("video", "keypoints"))]


@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    root = tmp_path_factory.mktemp("guided")
    synthesize(SynthConfig(people=2, seed=11, recordings_per_person=1, duration_s=14.0), root / "cohort",
               workers=1, progress=False)
    curate(root / "cohort" / "manifest.csv", root / "curated", labels=CLASSES, workers=1, progress=False)
    ws = load_curated(root / "curated", ["audio", "video", "keypoints"])
    export_models(_models(ws), "fused_gated", ws.contract, root / "export", onnx=False)
    return root, ws, Detector.load(root / "export")


def _run(det, path, steps=STEPS):
    engine = StreamEngine(det, update_every=1.0, smooth=1)
    session = GuidedSession(det, 0.0, update_every=1.0, prepare_s=1.0, steps=steps, settle_s=engine.max_wait_s)
    engine.listeners.append(session.on_window)
    messages = []
    for event in replay_file(engine, path):
        messages += session.advance(event["t"])
    messages += session.advance(14.0, final=True)
    return session, messages


def _offline(det, ws, rec, modality, starts):
    sel = np.flatnonzero((ws.windows.recording_id == rec).to_numpy() & ws.windows.start_s.isin(starts).to_numpy())
    assert len(sel) == len(starts)
    return det.primary.embed({modality: np.asarray(ws.inputs[modality][sel])})[modality]


def test_plan_follows_the_modalities_tasks(guided):
    _, ws, det = guided
    steps = plan({m: det.contract.modality(m) for m in det.modalities})
    assert [(s.task.name, s.modalities) for s in steps] == [
        ("voice", ("audio",)), ("tap_right", ("keypoints", "video")), ("tap_left", ("keypoints", "video"))]
    assert SMILE not in [s.task for s in steps]  # no face modality, no smiling


def test_timeline_phases_in_order_and_one_result(guided):
    _, _, det = guided
    session = GuidedSession(det, 2.0, update_every=1.0, prepare_s=1.0, steps=STEPS, settle_s=0.5)
    assert [(s.record_from, s.record_to) for s in session.spans] == [(3.0, 8.0), (9.0, 14.0)]
    messages = [m for t in np.arange(0.0, 16.0, 0.25) for m in session.advance(t)]
    phases = [(m["step"], m["phase"]) for m in messages if m["type"] == "guide"]
    assert phases == [(0, "prepare"), (0, "record"), (1, "prepare"), (1, "record"), (2, "finishing"), (2, "done")]
    results = [m for m in messages if m["type"] == "guided_result"]
    assert len(results) == 1  # no window came: nothing to fuse, and it says so
    fused = results[0]["result"]["fused"]
    assert fused["p"] is None and fused["abstain"] and fused["why"] == "no task gave a usable window"
    assert messages[0]["task"]["name"] == "voice" and messages[0]["task"]["instruction"]


def test_result_pools_each_tasks_windows_like_the_offline_computation(guided):
    root, ws, det = guided
    rec = ws.windows.recording_id.iloc[0]
    session, messages = _run(det, root / "cohort" / "recordings" / f"{rec}.mp4")
    result = [m["result"] for m in messages if m["type"] == "guided_result"]
    assert len(result) == 1
    result = result[0]
    voice, tap = result["steps"]
    # windows wholly inside each step's recording, and only the step's modalities taken from them
    assert voice["windows"] == 3 and voice["usable"] == {"audio": 3}
    assert tap["windows"] == 3 and tap["usable"] == {"video": 3, "keypoints": 3}
    assert set(tap["p"]) == {"video", "keypoints"} and set(voice["p"]) == {"audio"}
    # the fused result: the primary model on each modality's embeddings averaged over its task's windows
    audio = _offline(det, ws, rec, "audio", [1.0, 2.0, 3.0])
    hand = _offline(det, ws, rec, "keypoints", [7.0, 8.0, 9.0])
    both = shown_p(det.fused_from_embeddings({"audio": audio.mean(0, keepdims=True),
                                              "keypoints": hand.mean(0, keepdims=True)})[0])
    only_hand = shown_p(det.fused_from_embeddings({"keypoints": hand.mean(0, keepdims=True)})[0])
    only_voice = shown_p(det.fused_from_embeddings({"audio": audio.mean(0, keepdims=True)})[0])
    fused = result["fused"]
    assert fused["p"] == pytest.approx(both, abs=1e-5)
    assert fused["modalities"] == ["audio", "keypoints"]
    assert voice["contribution"] == pytest.approx(both - only_hand, abs=1e-5)
    assert tap["contribution"] == pytest.approx(both - only_voice, abs=1e-5)
    lo, hi = fused["interval"]
    assert 0.0 <= lo <= hi <= 1.0 and hi - lo > 0  # three windows a modality: the interval is not a point
    assert fused["label"] in CLASSES and 0.0 <= fused["uncertainty"] <= 1.0
    assert result["notice"] == NOTICE and result["model"] == det.model_id


def test_a_task_without_usable_windows_is_left_out_and_says_why(guided, tmp_path):
    """The same recording without its sound: the voice task gives nothing, the hand alone is fused."""
    root, ws, det = guided
    rec = ws.windows.recording_id.iloc[0]
    silent = tmp_path / f"{rec}.mp4"
    with av.open(str(root / "cohort" / "recordings" / f"{rec}.mp4")) as src, av.open(str(silent), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    shutil.copy(root / "cohort" / "recordings" / f"{rec}.keypoints.npy", tmp_path / f"{rec}.keypoints.npy")
    session, messages = _run(det, silent)
    result = session.result.to_json()
    voice, tap = result["steps"]
    assert voice["usable"] == {"audio": 0} and voice["quality"]["audio"] == {"no_data": 3}
    assert voice["contribution"] is None and tap["contribution"] is None  # the hand is all there is
    hand = _offline(det, ws, rec, "keypoints", [7.0, 8.0, 9.0])
    assert result["fused"]["modalities"] == ["keypoints"]
    assert result["fused"]["p"] == pytest.approx(
        shown_p(det.fused_from_embeddings({"keypoints": hand.mean(0, keepdims=True)})[0]), abs=1e-5)


def test_a_model_without_tasks_is_refused_with_a_message(guided):
    _, _, det = guided
    with pytest.raises(UsageError, match="no guided tasks"):
        GuidedSession(det, 0.0, steps=[])


def test_stream_command_guides_and_gives_the_result_of_what_the_recording_had(guided, tmp_path, capsys):
    """`symptomfuse stream FILE --guided`: the model's three tasks (voice, tap right, tap left: 3 s to get
    ready, then 6, 10 and 10 s) laid over a 14 s recording, which ends 2 s into the right-hand tapping,
    before any window of it is complete: the result comes from what it had (the voice) and says that the
    tapping tasks had no window."""
    from symptomfuse.cli import main

    root, ws, det = guided
    rec = ws.windows.recording_id.iloc[0]
    out = tmp_path / "events.jsonl"
    assert main(["stream", str(root / "cohort" / "recordings" / f"{rec}.mp4"), "--model", str(root / "export"),
                 "--guided", "--jsonl", str(out)]) == 0
    import json

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    guide = [(m["step"], m["phase"]) for m in lines if m.get("type") == "guide"]
    assert guide == [(0, "prepare"), (0, "record"), (1, "prepare"), (1, "record"), (3, "done")]  # ended early
    result = [m["result"] for m in lines if m.get("type") == "guided_result"]
    assert len(result) == 1 and lines[-1]["type"] == "guided_result"
    steps = {s["name"]: s for s in result[0]["steps"]}
    assert steps["voice"]["windows"] == 7 and steps["voice"]["usable"] == {"audio": 7}  # [3, 9): 7 windows
    assert steps["tap_right"]["windows"] == 0 and steps["tap_left"]["windows"] == 0
    assert result[0]["fused"]["modalities"] == ["audio"] and result[0]["fused"]["p"] is not None
    shown = capsys.readouterr().out
    assert "task 1/3: Voice" in shown and "session result:" in shown and "contribution" in shown


@pytest.mark.parametrize("odd,flagged", [(1, False), (3, True)])
def test_a_modality_is_unlike_the_training_data_when_most_of_its_windows_are(guided, odd, flagged):
    """One odd window among four does not make a session's voice unlike the training data; three do, and
    the result then abstains and says why."""
    from symptomfuse.stream.detector import Prediction

    _, _, det = guided
    session = GuidedSession(det, 0.0, update_every=1.0, prepare_s=1.0, steps=STEPS[:1], settle_s=0.5)
    rng = np.random.default_rng(0)
    for k, start in enumerate([1.0, 1.5, 2.0, 2.5]):  # the voice step records [1, 6)
        pred = Prediction(modalities={"audio": np.array([[0.4, 0.6]])}, fused_modalities=["audio"],
                          unlike={"audio": np.array([2.0 if k < odd else 0.5])},
                          embeddings={"audio": rng.normal(size=(1, det.primary.dims["audio"])).astype(np.float32)})
        session.on_window(start, {"audio": "ok"}, pred)
    result = session.finish().to_json()
    step = result["steps"][0]
    assert step["unlike_windows"] == {"audio": odd} and step["usable"] == {"audio": 4}
    assert (step["unlike_training"] == ["audio"]) == flagged
    assert (result["fused"]["why"] == "unlike the training data: audio") == flagged
