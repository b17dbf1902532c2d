"""Live detection: export, the two backends, the streaming engine against offline predictions, gating,
sources and the `export` / `stream` commands. Models are small random-weight models with their scalers
fitted on the test data, so the probabilities are not all 0 or 1."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from symptomfuse.artifacts import ModelSpec, RunInfo
from symptomfuse.cli import main
from symptomfuse.data.curate import curate
from symptomfuse.data.dataset import load_curated
from symptomfuse.evaluate.calibration import calibrated
from symptomfuse.features.audio import SAMPLE_RATE
from symptomfuse.models.multimodal import MultimodalClassifier, save
from symptomfuse.stream.detector import Detector
from symptomfuse.stream.engine import NOTICE, StreamEngine
from symptomfuse.stream.export import export_models
from symptomfuse.stream.sources import DeviceError, open_camera, open_microphone, replay_file
from symptomfuse.synth.cohort import SynthConfig, synthesize

from conftest import make_av

ENCODERS = {"audio": {"name": "logmel_cnn", "channels": [4, 8, 8], "dim": 16},
            "video": {"name": "frames_cnn", "channels": [4, 8], "dim": 16},
            "keypoints": {"name": "keypoints_tcn", "channels": 16, "dim": 16, "levels": 2}}
CLASSES = ["healthy", "parkinsons"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two synthetic 6 s recordings, curated with the default settings."""
    root = tmp_path_factory.mktemp("stream")
    synthesize(SynthConfig(people=2, seed=11, recordings_per_person=1, duration_s=6.0), root / "cohort",
               workers=1, progress=False)
    curate(root / "cohort" / "manifest.csv", root / "curated", labels=CLASSES, workers=1, progress=False)
    ws = load_curated(root / "curated", ["audio", "video", "keypoints"])
    return root, ws


def _models(ws) -> dict:
    models = {}
    for i, (m, cfg) in enumerate(ENCODERS.items()):
        models[f"{m}_only"] = (MultimodalClassifier({m: cfg}, None, 2, init_seed=i), 0.9 + 0.2 * i)
    models["fused_gated"] = (MultimodalClassifier({m: ENCODERS[m] for m in ("audio", "keypoints")},
                                                  {"name": "gated", "dim": 16}, 2, init_seed=7), 1.3)
    for model, _ in models.values():
        for m, enc in model.encoders.items():
            x = torch.from_numpy(np.asarray(ws.inputs[m]))
            prepare = getattr(enc, "prepare", None)  # encoders that fit their scaler on prepared input
            enc.fit_normalizer(prepare(x) if prepare is not None else x)
        model.eval()
    return models


@pytest.fixture(scope="module")
def exported(data):
    root, ws = data
    models = _models(ws)
    export_models(models, "fused_gated", ws.contract, root / "export", onnx=True)
    return root / "export", models


def test_export_folder_is_self_contained(exported):
    folder, _ = exported
    spec = json.loads((folder / "export.json").read_text())
    assert spec["primary"] == "fused_gated" and spec["positive_class"] == "parkinsons"
    assert spec["singles"] == {"audio": "audio_only", "video": "video_only", "keypoints": "keypoints_only"}
    assert spec["contract"]["timing"]["window_s"] == 3.0 and spec["live"]["audio"]["label"] == "voice" and spec["models"]["fused_gated"]["temperature"] == 1.3
    assert set(spec["models"]["fused_gated"]["parts"]) == {"encoder.audio", "encoder.keypoints", "head"}
    for entry in spec["models"].values():
        for part in entry["parts"].values():
            assert (folder / part["safetensors"]).stat().st_size > 0 and (folder / part["onnx"]).stat().st_size > 0
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    # every file is one export.json names and hashes: no ONNX external-data file (torch's exporter writes
    # the weights beside the .onnx unless told not to)
    named = {"export.json"} | {f for entry in spec["models"].values() for f in entry["sha256"]}
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == named


def test_split_parts_match_the_whole_model(data, exported):
    _, ws = data
    folder, models = exported
    det = Detector.load(folder, "torch")
    x = {m: ws.inputs[m][:4] for m in ("audio", "keypoints")}
    model, temperature = models["fused_gated"]
    with torch.no_grad():
        for given in (["audio", "keypoints"], ["audio"], ["keypoints"]):
            whole = model({m: torch.from_numpy(x[m]) for m in given}).numpy()
            got = det.predict({m: x[m] for m in given})
            np.testing.assert_allclose(got.fused, calibrated(whole, temperature), atol=1e-6)
            assert got.fused_modalities == given


def test_torch_and_onnxruntime_agree(data, exported):
    _, ws = data
    folder, _ = exported
    on_torch, on_onnx = Detector.load(folder, "torch"), Detector.load(folder, "onnx")
    x = {m: v[:6] for m, v in ws.inputs.items()}
    for given in (list(x), ["audio", "video"], ["keypoints"]):
        a, b = on_torch.predict({m: x[m] for m in given}), on_onnx.predict({m: x[m] for m in given})
        for m in given:
            np.testing.assert_allclose(a.modalities[m], b.modalities[m], atol=1e-4)
        np.testing.assert_allclose(a.fused, b.fused, atol=1e-4)


def test_no_onnx_matmul_with_a_few_weights_is_left(exported):
    """The video encoder's RGB -> luma product (a MatMul with 3 weights, which onnxruntime runs several
    times slower than the rest of the encoder) is rewritten in every exported file, whether the exporter
    stored the weights as an initializer or as a Constant node (the TorchScript tracer does)."""
    import onnx

    folder, _ = exported
    rewritten = 0
    for path in folder.rglob("*.onnx"):
        graph = onnx.load(str(path)).graph
        small = {i.name for i in graph.initializer if len(i.dims) == 1 and i.dims[0] <= 8}
        small |= {n.output[0] for n in graph.node if n.op_type == "Constant"
                  and any(a.name == "value" and len(a.t.dims) == 1 and a.t.dims[0] <= 8 for a in n.attribute)}
        assert not [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in small], path
        rewritten += sum(n.op_type == "ReduceSum" and n.name.endswith("_sum") for n in graph.node)
    assert rewritten >= 1  # the video encoder's, at least


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_streamed_file_equals_offline_windows(data, exported, backend):
    root, ws = data
    folder, _ = exported
    det = Detector.load(folder, backend)
    rec = ws.windows.recording_id.iloc[0]
    sel = (ws.windows.recording_id == rec).to_numpy()
    offline = det.predict({m: v[sel] for m, v in ws.inputs.items()})
    engine = StreamEngine(det, update_every=0.5, smooth=1)
    events = list(replay_file(engine, root / "cohort" / "recordings" / f"{rec}.mp4"))
    assert [e["t"] for e in events] == [3.0 + 0.5 * i for i in range(len(events))] and len(events) >= 7
    by_start = {e["window"][0]: e for e in events}
    for i, start in enumerate(ws.windows.start_s[sel]):
        e = by_start[start]
        for m in ("audio", "video", "keypoints"):
            assert e["modalities"][m]["quality"] == "ok"
            assert abs(e["modalities"][m]["p"] - offline.modalities[m][i, 1]) < 1e-5
        assert abs(e["fused"]["p"] - offline.fused[i, 1]) < 1e-5
        assert e["fused"]["modalities"] == ["audio", "keypoints"] and e["notice"] == NOTICE
    # every event names the export it came from: the hash of export.json, which records every part's hash
    assert det.model_id == "sha256:" + hashlib.sha256((folder / "export.json").read_bytes()).hexdigest()[:16]
    assert {e["model"] for e in events} == {det.model_id}
    json.dumps(events)  # plain JSON


def test_realtime_replay_keeps_media_pace(data, exported):
    root, ws = data
    now = [0.0]  # a fake wall clock that only sleeping moves

    def sleep(seconds):
        now[0] += seconds

    engine = StreamEngine(Detector.load(exported[0]), update_every=1.0, clock=lambda: now[0])
    rec = ws.windows.recording_id.iloc[0]
    events = list(replay_file(engine, root / "cohort" / "recordings" / f"{rec}.mp4", realtime=True,
                              landmarks=None, clock=lambda: now[0], sleep=sleep))
    assert 5.9 < now[0] < 6.1  # the recording's 6 s
    assert [e["t"] for e in events] == [3.0, 4.0, 5.0, 6.0]
    assert all(e["latency_ms"] < 50 for e in events)  # from the window's end (a frame or a 21 ms audio chunk)
    assert all(e["modalities"]["keypoints"]["quality"] == "no_landmarks" for e in events)
    assert all(e["fused"]["modalities"] == ["audio"] for e in events)  # fusion uses what is present


def _voice(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sign(np.sin(2 * np.pi * 140 * t)) * np.exp(-((t * 140) % 1) * 3)).astype(np.float32)


def _push(engine, seconds, audio=None, frame=None, landmarks="skip", fps=25, rate=SAMPLE_RATE):
    """Push ``seconds`` of frames (and landmarks) with the audio between them, as a live source would."""
    events, block = [], rate // fps
    for k in range(int(seconds * fps)):
        t = k / fps
        if frame is not None:
            events += engine.push_video(frame(k), t)
        if landmarks != "skip":
            events += engine.push_landmarks(landmarks(k), t)
        if audio is not None:
            events += engine.push_audio(audio[k * block:(k + 1) * block], rate, t)
    return events + engine.flush()


def _moving(k):
    rng = np.random.default_rng(k)
    return rng.integers(40, 220, (48, 64, 3), dtype=np.uint8)


def test_gating_silence_and_black_frames_switch_modalities_off(exported):
    det = Detector.load(exported[0])
    events = _push(StreamEngine(det), 4.0, audio=np.zeros(4 * SAMPLE_RATE, np.float32),
                   frame=lambda k: np.zeros((48, 64, 3), np.uint8))
    assert events
    for e in events:
        assert e["modalities"]["audio"] == {"p": None, "quality": "silence"}
        assert e["modalities"]["video"] == {"p": None, "quality": "black"}
        assert e["fused"]["p"] is None and e["fused"]["abstain"] is True and e["fused"]["modalities"] == []

    # voice with a black picture: audio carries on alone, and the event says so
    events = _push(StreamEngine(det), 4.0, audio=_voice(4.0), frame=lambda k: np.zeros((48, 64, 3), np.uint8))
    assert all(e["modalities"]["audio"]["quality"] == "ok" and e["modalities"]["video"]["quality"] == "black"
               for e in events)
    assert all(e["fused"]["modalities"] == ["audio"] and e["fused"]["p"] is not None for e in events)


def test_gating_noise_frozen_picture_and_no_hand(exported):
    det = Detector.load(exported[0])
    noise = (0.05 * np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    still = _moving(0)
    events = _push(StreamEngine(det), 4.0, audio=noise, frame=lambda k: still, landmarks=lambda k: None)
    for e in events:
        assert e["modalities"]["audio"]["quality"] == "no_voice"
        assert e["modalities"]["video"]["quality"] == "frozen"
        assert e["modalities"]["keypoints"]["quality"] == "no_hand"
    events = _push(StreamEngine(det), 4.0, frame=_moving, landmarks=lambda k: None)
    assert all(e["modalities"]["video"]["quality"] == "no_hand" for e in events)
    assert all(e["modalities"]["audio"]["quality"] == "no_data" for e in events)


def test_audio_at_another_rate_is_resampled(exported):
    det = Detector.load(exported[0])
    events = _push(StreamEngine(det), 4.0, audio=_voice(4.0, 48000), rate=48000)
    assert [e["t"] for e in events] == [3.0, 3.5, 4.0]
    assert all(e["modalities"]["audio"]["quality"] == "ok" and e["modalities"]["audio"]["p"] is not None
               for e in events)


def test_bad_inputs_say_what_to_fix(exported):
    engine = StreamEngine(Detector.load(exported[0]))
    with pytest.raises(ValueError, match="mono"):
        engine.push_audio(np.zeros((100, 2), np.float32), 16000, 0.0)
    with pytest.raises(ValueError, match="21"):
        engine.push_landmarks(np.zeros((5, 3)), 0.0)
    with pytest.raises(ValueError, match="uint8"):
        engine.push_video(np.zeros((48, 64, 3), np.float32), 0.0)
    for every in (0, 1e-9, 1e9):  # 1e-9 made a file's stream one that never ended
        with pytest.raises(ValueError, match="update_every must be 0.01-60 s"):
            StreamEngine(engine.detector, update_every=every)
    with pytest.raises(FileNotFoundError, match="symptomfuse export"):
        Detector.load(exported[0].parent, "torch")


def test_missing_devices_give_clear_errors(exported, capsys):
    with pytest.raises(DeviceError, match="no camera at index 97"):
        open_camera(97)
    with pytest.raises(DeviceError, match="PortAudio|microphone"):
        open_microphone("no such microphone 123")
    assert main(["stream", "--camera", "97", "--model", str(exported[0])]) == 2
    assert "no camera at index 97" in capsys.readouterr().err
    assert main(["stream", "--mic", "no such microphone 123", "--model", str(exported[0])]) == 2
    assert "microphone" in capsys.readouterr().err
    assert main(["stream", "--model", str(exported[0])]) == 2  # neither a file nor a device


class _Devices:
    """A camera and a microphone that play a recording on a fake clock, for ``sources.live``: the camera
    gives its frames (as OpenCV does: BGR) each at its time, the clock moving to it as a real read waits
    for the next picture; the microphone's blocks (50 ms, as ``open_microphone`` asks for) become
    available once their last sample has been recorded. After the recording, the camera keeps showing its
    last picture and the microphone hears silence, as devices go on. Both record being released."""

    def __init__(self, path, fps: float = 25.0, block_s: float = 0.05):
        from symptomfuse.data.media import iter_decoded, open_media

        container, streams, _ = open_media(path, True, True)
        audio, self.frames = [], []
        with container:
            for kind, _, payload in iter_decoded(container, streams, fps):
                if kind == "audio":
                    audio.append(payload)
                else:
                    self.frames.append(payload.to_ndarray(format="rgb24")[..., ::-1].copy())
        self.audio = np.concatenate(audio)
        n = int(block_s * SAMPLE_RATE)
        self.block_n, self.block_s, self.fps, self.now, self.next_frame, self.next_block = n, block_s, fps, 0.0, 0, 0
        self.released = []

    # the clock (``time.monotonic`` in sources)
    def monotonic(self) -> float:
        return self.now

    # the camera (``cv2.VideoCapture``)
    def read(self):
        self.now = max(self.now, self.next_frame / self.fps)
        self.next_frame += 1
        return True, self.frames[min(self.next_frame, len(self.frames)) - 1]

    def release(self):
        self.released.append("camera")

    # the microphone's queue
    def empty(self) -> bool:
        return (self.next_block + 1) * self.block_s > self.now

    def get_nowait(self):
        import queue

        if self.empty():
            raise queue.Empty
        k, n = self.next_block, self.block_n
        self.next_block += 1
        samples = self.audio[k * n:(k + 1) * n]
        return k * self.block_s, np.pad(samples, (0, n - len(samples)))

    def get(self, timeout: float):
        self.now = max(self.now, (self.next_block + 1) * self.block_s)  # waits for the block's last sample
        return self.get_nowait()

    # the microphone's stream
    def stop(self):
        self.released.append("mic stopped")

    def close(self):
        self.released.append("mic closed")


def test_live_camera_and_microphone_give_the_offline_voice_predictions(data, exported, monkeypatch):
    """``live`` (webcam + microphone) on simulated devices playing a recording: updates at the media pace,
    the voice's predictions those of the offline windows (the same samples), the picture analysed, and
    both devices released, also when the consumer stops early."""
    from symptomfuse.stream import sources

    root, ws = data
    rec = ws.windows.recording_id.iloc[0]
    sel = (ws.windows.recording_id == rec).to_numpy()
    det = Detector.load(exported[0])
    offline = det.predict({m: v[sel] for m, v in ws.inputs.items()})

    def run(camera, mic, seconds, stop_after=None):
        devices = _Devices(root / "cohort" / "recordings" / f"{rec}.mp4")
        monkeypatch.setattr(sources, "time", devices)
        monkeypatch.setattr(sources, "open_camera", lambda index: devices)
        monkeypatch.setattr(sources, "open_microphone", lambda device: (devices, devices, devices.monotonic()))
        events = []
        devices.engine = StreamEngine(det, update_every=0.5, smooth=1, clock=devices.monotonic)
        stream = sources.live(devices.engine, camera, mic, seconds)
        for event in stream:
            events.append(event)
            if stop_after is not None and len(events) == stop_after:
                stream.close()
                break
        return events, devices

    events, devices = run(0, "default", 6.0)
    assert [e["t"] for e in events] == [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    assert devices.released == ["camera", "mic stopped", "mic closed"]
    # the pictures of the last window as the engine holds them, beside curation's: the camera's BGR was
    # turned to RGB (with the channels the wrong way round they differ by about 16 levels on average)
    last = np.flatnonzero(sel)[-1:]
    assert ws.windows.start_s.to_numpy()[last][0] == 3.0
    live_frames = np.stack(devices.engine.streams.frames.window(3.0, 75)).astype(float)
    curated = np.asarray(ws.inputs["video"][last][0], float)
    assert np.abs(live_frames - curated).mean() < 2.5  # 1.3: through RGB and back to YUV
    by_start = {e["window"][0]: e for e in events}
    for i, start in enumerate(ws.windows.start_s[sel]):
        e = by_start[start]
        assert e["modalities"]["audio"]["quality"] == "ok"
        assert abs(e["modalities"]["audio"]["p"] - offline.modalities["audio"][i, 1]) < 1e-5
        assert e["modalities"]["video"]["quality"] == "ok"
        assert abs(e["modalities"]["video"]["p"] - offline.modalities["video"][i, 1]) < 0.01
        assert e["modalities"]["keypoints"]["quality"] == "no_landmarks"  # no hand detector given
        assert e["fused"]["modalities"] == ["audio"] and e["notice"] == NOTICE

    events, devices = run(None, "default", 6.0)  # a microphone alone
    assert [e["t"] for e in events] == [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    assert all(e["modalities"]["video"]["quality"] != "ok" for e in events)
    assert devices.released == ["mic stopped", "mic closed"]

    events, devices = run(0, "default", None, stop_after=2)  # the consumer stops (Ctrl-C in the CLI)
    assert len(events) == 2 and devices.released == ["camera", "mic stopped", "mic closed"]


def test_export_and_stream_commands(data, exported, tmp_path, capsys):
    root, ws = data
    _, models = exported
    # a run folder as `symptomfuse train` writes it, with this fold's models
    run = tmp_path / "run"
    people = sorted(ws.windows.person_id.unique())
    info = RunInfo({"folds": 2, "people": len(people), "seed": 0, "held_out": []}, ws.contract, "recording", {}, [], {})
    for name, (model, temperature) in models.items():
        spec = ModelSpec(name, model.modalities, model.config()["encoders"], model.config()["fusion"])
        info.models[name] = {"spec": spec, "folds": [{"fold": f, "temperature": temperature + f} for f in (0, 1)]}
        for f in (0, 1):
            save(model, run / "models" / name / f"fold{f}")
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text(json.dumps(info.to_json()))
    windows = ws.windows.assign(fold=[people.index(p) for p in ws.windows.person_id], y=ws.y)
    windows.to_csv(run / "samples.csv", index_label="sample_index")
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--person", people[1], "--no-onnx"]) == 0
    spec = json.loads((out / "export.json").read_text())
    assert spec["source"]["fold"] == 1 and spec["source"]["test_people"] == [people[1]]
    assert spec["primary"] == "fused_gated" and spec["models"]["fused_gated"]["temperature"] == 2.3
    assert main(["export", str(run), "--out", str(out), "--model", "nope"]) == 2
    assert "choose a trained network" in capsys.readouterr().err

    rec = ws.windows.recording_id[ws.windows.person_id == people[1]].iloc[0]
    events_path = tmp_path / "events.jsonl"
    assert main(["stream", str(root / "cohort" / "recordings" / f"{rec}.mp4"), "--model", str(out),
                 "--jsonl", str(events_path)]) == 0
    shown = capsys.readouterr().out
    assert NOTICE in shown and "fused" in shown
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert len(events) >= 7 and all(e["notice"] == NOTICE for e in events)
    assert pd.Series([e["fused"]["p"] for e in events]).between(0, 1).all()

    short = make_av(tmp_path / "short.mp4", 1.0)  # shorter than a window: a message, not silence
    assert main(["stream", str(short), "--model", str(out), "--no-view", "--jsonl", str(tmp_path / "short.jsonl")]) == 0
    assert "no update: the recording ended before a 3-s window of any modality was complete" in capsys.readouterr().err
    assert main(["stream", str(tmp_path), "--model", str(out)]) == 2
    assert "is not a recording but a folder" in capsys.readouterr().err
    assert main(["stream", str(short), "--model", str(out), "--jsonl", str(tmp_path)]) == 2
    assert f"--jsonl {tmp_path}: cannot write there (Is a directory)" in capsys.readouterr().err


def test_the_stream_summary_says_how_many_updates_abstained():
    """A stream whose every update abstained (e.g. a voice unlike the training data) must not close with a
    bare "mean fused p 0.00", which reads as a confident answer."""
    from symptomfuse.cli import _stream_summary

    def event(p, abstain, unlike=()):
        return {"fused": {"p_window": p, "abstain": abstain, "unlike_training": list(unlike)}, "latency_ms": 5.0}

    line = _stream_summary([event(0.01, True, ["audio"]), event(0.02, True), event(0.9, False)], "parkinsons")
    assert line.startswith("3 updates, 2 of them abstaining (1 as unlike the training data); mean fused "
                           "p(parkinsons) over the stream 0.31; latency p50 5 ms") and line.endswith(NOTICE)


def test_log_mel_ring_equals_log_mel_of_each_window():
    from symptomfuse.features.audio import LogMelConfig, log_mel
    from symptomfuse.stream.buffers import AudioRing, LogMelRing

    cfg = LogMelConfig()
    audio, ring = AudioRing(keep_s=6.0), LogMelRing(cfg, keep_s=6.0)
    x = (0.1 * np.random.default_rng(1).standard_normal(10 * SAMPLE_RATE)).astype(np.float32)
    for i in range(0, len(x), 700):
        audio.push(x[i:i + 700], SAMPLE_RATE, -0.0213 + i / SAMPLE_RATE)
        for start in (0.0, 0.5, 1.0, 2.0, 5.5, 6.255):  # 6.255 s is off the hop phase: the cache starts afresh
            first = audio.index(start)
            got = ring.window(audio, first, 3 * SAMPLE_RATE)
            if got is not None:
                np.testing.assert_allclose(got, log_mel(audio.read(first, 3 * SAMPLE_RATE), cfg), atol=1e-3)


def test_audio_ring_keeps_its_clock_through_long_pushes_and_gaps():
    """A push longer than the ring, or a gap of an hour, moves the clock by exactly that much and holds
    the newest samples (a gap is silence), without allocating the gap."""
    from symptomfuse.stream.buffers import AudioRing

    ring = AudioRing(keep_s=1.0)
    x = np.arange(3 * SAMPLE_RATE, dtype=np.float32)  # 3 s, three times the ring
    ring.push(x, SAMPLE_RATE, t=10.0)
    assert ring.clock == pytest.approx(13.0)
    np.testing.assert_array_equal(ring.read(ring.index(12.5), SAMPLE_RATE // 2), x[-SAMPLE_RATE // 2:])
    assert ring.read(ring.index(11.0), 10) is None  # no longer held
    ring.push(np.ones(SAMPLE_RATE // 2, np.float32), SAMPLE_RATE, t=13.0 + 3600.0)  # an hour later
    assert ring.clock == pytest.approx(13.0 + 3600.5)
    tail = ring.read(ring.index(13.0 + 3599.75), SAMPLE_RATE // 2)
    np.testing.assert_array_equal(tail[:SAMPLE_RATE // 4], 0)  # the gap, as silence
    np.testing.assert_array_equal(tail[SAMPLE_RATE // 4:], 1)


def test_engine_skips_windows_lost_in_a_long_gap(exported):
    """After an hour without input the engine goes on from the windows it still holds: a handful of
    events, not one per update across the gap."""
    engine = StreamEngine(Detector.load(exported[0]))
    voice = _voice(4.0)
    events = engine.push_audio(voice, SAMPLE_RATE, 0.0)
    events += engine.push_audio(voice, SAMPLE_RATE, 3600.0)
    assert 0 < len(events) < 20
    assert max(e["t"] for e in events) >= 3603.0


def test_encoders_shared_with_the_own_models_run_once(data, tmp_path):
    """A fused model built on its modalities' own encoders (as frozen-encoder training makes it) encodes
    each modality once per prediction, and predicts exactly what the whole model does."""
    root, ws = data
    models = _models(ws)
    fused = models["fused_gated"][0]
    for m in fused.modalities:
        fused.encoders[m].load_state_dict(models[f"{m}_only"][0].encoders[m].state_dict())
    export_models(models, "fused_gated", ws.contract, tmp_path / "export", onnx=False)
    det = Detector.load(tmp_path / "export")
    assert det.shared == ["audio", "keypoints"]
    calls = {}
    for name, model in det.models.items():
        for part, run in list(model.parts.items()):
            def counted(feeds, run=run, key=(name, part)):
                calls[key] = calls.get(key, 0) + 1
                return run(feeds)
            model.parts[part] = counted
    x = {m: ws.inputs[m][:3] for m in ("audio", "video", "keypoints")}
    p = det.predict(x)
    assert calls.get(("fused_gated", "encoder.audio"), 0) == 0 and calls[("audio_only", "encoder.audio")] == 1
    with torch.no_grad():
        whole = fused({m: torch.from_numpy(x[m]) for m in ("audio", "keypoints")}).numpy()
    np.testing.assert_allclose(p.fused, calibrated(whole, 1.3), atol=1e-5)


def test_the_engine_finds_hands_itself_and_says_when_it_falls_behind(data, exported):
    """MediaPipe Hands on every pushed frame (no landmark file); with no time for it, frames are skipped
    and windows that lost most of their frames say so."""
    root, ws = data
    folder, _ = exported
    det = Detector.load(folder, "torch")
    rec = root / "cohort" / "recordings" / f"{ws.windows.recording_id.iloc[0]}.mp4"
    engine = StreamEngine(det, update_every=1.0, hand_detector="mediapipe", landmark_budget_s=10.0)
    events = list(replay_file(engine, rec, landmarks=None))
    assert len(engine.landmark_seconds) == round(6.0 * 25)  # every frame of the 6 s recording
    assert {e["modalities"]["keypoints"]["quality"] for e in events} <= {"ok", "no_hand"}
    starved = StreamEngine(det, update_every=1.0, hand_detector="mediapipe", landmark_budget_s=1e-6)
    events = list(replay_file(starved, rec, landmarks=None))
    assert len(starved.landmark_seconds) < 5
    assert events and all(e["modalities"]["keypoints"]["quality"] == "landmarks_behind" for e in events[1:])
    with pytest.raises(Exception, match="mediapipe"):
        StreamEngine(det, hand_detector="openpose")


def test_the_early_stopping_voice_gate_answers_as_the_full_count_does():
    """``enough_voice`` stops looking once the answer is settled; on windows with every share of voiced
    frames (noise and a pitched tone spliced frame by frame) and at several thresholds it must give what
    counting every frame gives, exactly."""
    from symptomfuse.stream.quality import QualityConfig, _pitch_frames, _voiced, enough_voice

    rng = np.random.default_rng(3)
    frame = int(0.04 * SAMPLE_RATE)
    tone = (0.3 * np.sin(2 * np.pi * 150 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    answers = set()
    for trial in range(60):
        x = (0.05 * rng.standard_normal(3 * SAMPLE_RATE + int(rng.integers(0, frame)))).astype(np.float32)
        voiced = rng.random(len(x) // frame) < trial / 60
        for k in np.flatnonzero(voiced):
            x[k * frame:(k + 1) * frame] = tone[k * frame:(k + 1) * frame]
        for share in (0.0, 0.2, 0.5, 0.9, 1.0):
            cfg = QualityConfig(min_voiced=share)
            full = float(_voiced(_pitch_frames(x), cfg).mean()) >= share
            assert enough_voice(x, cfg) == full
            answers.add(full)
    assert answers == {True, False}
    assert enough_voice(np.zeros(100, np.float32)) is False  # shorter than a frame
