"""Curation: every bad row is quarantined with the right reason, good rows are kept, the cache works."""

import shutil

import av
import numpy as np
import pandas as pd
import pytest

from symptomfuse.cli import main
from symptomfuse.data import featurize as featurize_mod
from symptomfuse.data import media as media_mod
from symptomfuse.data.cache import FeatureCache
from symptomfuse.data.curate import curate, default_contract
from symptomfuse.data.media import MediaError, decode
from symptomfuse.features.audio import SAMPLE_RATE
from symptomfuse.features.video import FrameConfig
from symptomfuse.synth.cohort import write_av

from conftest import make_av

LABELS = ["healthy", "parkinsons"]


@pytest.fixture(scope="module")
def dirty(cohort, tmp_path_factory):
    """The cohort's manifest plus one injected row per failure, each with the reason it must get."""
    d = tmp_path_factory.mktemp("dirty")
    m = pd.read_csv(cohort / "manifest.csv")
    m["path"] = [str(cohort / p) for p in m.path]
    m["keypoints"] = [str(cohort / p) for p in m.keypoints]
    good = m.copy()
    first = m.iloc[0]

    (d / "empty.mp4").write_bytes(b"")
    data = (cohort / first.path).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    make_av(d / "audio_only.m4a", 5.0, video=False)
    make_av(d / "video_only.mp4", 5.0, audio=False)
    make_av(d / "short.mp4", 2.0, seed=1)
    shutil.copy(cohort / first.path, d / "copy_of_first.mp4")
    make_av(d / "conflict_a.mp4", 4.0, seed=2)
    make_av(d / "conflict_b.mp4", 4.0, seed=3)
    make_av(d / "sep_audio.m4a", 5.0, video=False, seed=4)
    make_av(d / "sep_video.mp4", 5.0, audio=False, seed=5)

    def row(path, person, label="healthy", session="1", **kw):
        return {"path": str(path), "person_id": person, "label": label, "session": session, "keypoints": "", **kw}

    injected = [
        (row(d / "nope.mp4", "X01"), "missing_file"),
        (row(d / "empty.mp4", "X02"), "empty_file"),
        (row(d / "truncated.mp4", "X03"), "corrupt"),
        (row(d / "random.mp4", "X04"), "unreadable"),
        (row(d / "audio_only.m4a", "X05"), "no_video"),
        (row(d / "video_only.mp4", "X06"), "no_audio"),
        (row(d / "short.mp4", "X07"), "too_short"),
        (row(d / "short.mp4", "X08", label="parkinson?"), "unknown_label"),
        (dict(first), "duplicate_row"),
        (row(d / "copy_of_first.mp4", "X09"), "duplicate_content"),
        (row(d / "conflict_a.mp4", "X10", label="healthy"), "conflicting_labels"),
        (row(d / "conflict_b.mp4", "X10", label="parkinsons", session="2"), "conflicting_labels"),
        (row("", "X11"), "missing_field"),
    ]
    separate = {"path": "", "audio_path": str(d / "sep_audio.m4a"), "video_path": str(d / "sep_video.mp4"),
                "person_id": "X12", "label": "parkinsons", "session": "1", "keypoints": ""}
    rows = [dict(r) for r in good.to_dict("records")] + [r for r, _ in injected] + [separate]
    manifest = pd.DataFrame(rows).fillna("")
    manifest.to_csv(d / "manifest.csv", index=False)
    expected = {len(good) + i: reason for i, (_, reason) in enumerate(injected)}
    return d / "manifest.csv", expected, len(good) + 1


def test_bad_rows_are_quarantined_with_their_reason(dirty, tmp_path):
    manifest, expected, n_good = dirty
    res = curate(manifest, tmp_path / "out", labels=LABELS, workers=2, progress=False)
    got = dict(zip(res.quarantine.row, res.quarantine.reason))
    assert got == expected
    assert len(res.recordings) == n_good  # every good row, the separate audio + video one included
    assert set(res.recordings.row) == set(range(n_good - 1)) | {n_good - 1 + len(expected)}
    q = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert len(q) == len(expected) and q.detail.notna().all()
    s = res.summary
    assert s["totals"]["quarantined"] == len(expected)
    assert s["quarantined_by_reason"]["conflicting_labels"] == 2
    for f in ("recordings.csv", "windows.csv", "summary.json", "summary.png", "curation.json"):
        assert (tmp_path / "out" / f).stat().st_size > 0


def test_rerun_hits_the_cache_and_decodes_nothing(dirty, tmp_path, monkeypatch):
    manifest, expected, n_good = dirty
    first = curate(manifest, tmp_path / "out", labels=LABELS, workers=2, progress=False)
    assert first.decoded > 0

    def no_decode(*a, **k):
        raise AssertionError("decoded on a re-run with nothing changed")

    monkeypatch.setattr(featurize_mod, "decode", no_decode)
    again = curate(manifest, tmp_path / "out", labels=LABELS, workers=1, progress=False)
    assert again.decoded == 0 and again.cache_hits == first.decoded + first.cache_hits
    pd.testing.assert_frame_equal(again.recordings, first.recordings)
    assert dict(zip(again.quarantine.row, again.quarantine.reason)) == expected
    # A changed setting is a new key: now it must decode again.
    with pytest.raises(AssertionError, match="decoded on a re-run"):
        curate(manifest, tmp_path / "out", default_contract(hop_s=0.5), labels=LABELS, workers=1, progress=False)


def test_windows_and_features_have_the_right_shapes(cohort, tmp_path):
    res = curate(cohort / "manifest.csv", tmp_path / "out", labels=LABELS, workers=2, progress=False)
    assert len(res.quarantine) == 0
    assert (res.recordings.n_windows == 4).all()  # 6 s recordings, 3 s windows, 1 s hop
    assert len(res.windows) == 4 * len(res.recordings)
    arrays = FeatureCache(tmp_path / "out" / "cache").load(res.recordings.cache_key[0])
    assert arrays["audio"].shape == (4, 64, 298)
    assert arrays["video"].shape == (150, 48, 64, 3) and arrays["video"].dtype == np.uint8
    assert arrays["keypoints"].shape == (4, 75, 127)
    assert np.all(arrays["keypoints"][..., -1] == 1)  # the hand is in every synthetic frame
    np.testing.assert_allclose(res.windows.start_s.to_numpy()[:4], [0, 1, 2, 3])
    # the voice sits in the middle of the recording: its windows are loud
    assert (res.windows.audio_rms_db > -40).all()


def test_audio_and_video_are_aligned(tmp_path):
    """A click and a white flash at the same instant land on the same window position after curation."""
    fps, rate, t_event = 25, 44100, 2.0
    frames = [np.full((120, 160, 3), 255 if abs(i / fps - t_event) < 0.5 / fps else 20, np.uint8)
              for i in range(5 * fps)]
    audio = np.zeros(5 * rate, np.float32)
    k = int(t_event * rate)
    audio[k:k + 441] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(441) / rate)
    write_av(tmp_path / "sync.mp4", frames, audio, fps, rate, 160, 120)
    dec = decode(tmp_path / "sync.mp4", tmp_path / "sync.mp4", tmp_path, FrameConfig(fps=25))
    flash = np.argmax(dec.frames[:].mean(axis=(1, 2, 3))) / 25
    click = np.argmax(np.abs(dec.audio[:]) > 0.2) / SAMPLE_RATE
    assert abs(flash - click) <= 1 / fps + 1e-6, (flash, click)


def test_resampling_to_another_frame_rate(tmp_path):
    make_av(tmp_path / "a.mp4", 4.0, fps=30)
    dec = decode(tmp_path / "a.mp4", tmp_path / "a.mp4", tmp_path, FrameConfig(width=32, height=24, fps=15))
    assert dec.frames.shape[1:] == (24, 32, 3)
    assert abs(len(dec.frames) / 15 - 4.0) <= 2 / 15
    assert abs(len(dec.audio) / SAMPLE_RATE - 4.0) < 0.1


def test_frames_no_output_instant_shows_are_not_scaled(tmp_path, monkeypatch):
    """Decoded frames that the shared rate drops are skipped, with the same frames and index as scaling
    every one: from faster and slower sources, with the audio in the same file or another, and with
    frames that come out of time order (then nothing is skipped)."""
    cfg = FrameConfig(width=32, height=24, fps=25)

    (tmp_path / "fast").mkdir()
    (tmp_path / "full").mkdir()

    def both(audio, video):  # (each into its own scratch folder: the frames are read from there)
        fast = decode(audio, video, tmp_path / "fast", cfg)
        full = decode(audio, video, tmp_path / "full", cfg, skip_unshown=False)
        np.testing.assert_array_equal(fast.frames[:], full.frames[:])
        np.testing.assert_array_equal(fast.source_frame_index, full.source_frame_index)
        assert full.frames_skipped == 0
        # never more than the frames no instant shows (the first and last are always scaled)
        assert fast.frames_skipped <= fast.source_frames - len(np.unique(fast.source_frame_index))
        return fast.frames_skipped

    for fps, skips in ((30, True), (60, True), (25, False), (20, False)):
        path = make_av(tmp_path / f"av{fps}.mp4", 2.0, fps=fps, seed=fps)
        assert (both(path, path) > 0) == skips, fps
    video = make_av(tmp_path / "v.mp4", 2.0, audio=False, fps=30)
    assert both(make_av(tmp_path / "a.m4a", 2.0, video=False), video) > 0
    assert both(None, video) > 0
    # sound that starts later than the picture: the output instants start with the sound
    rate, late = 16000, tmp_path / "late.m4a"
    with av.open(str(late), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(0, 2 * rate, 1024):
            frame = av.AudioFrame.from_ndarray(np.full((1, 1024), 0.1, np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, int(0.13 * rate) + i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert decode(late, None, tmp_path).audio is not None
    assert both(late, video) > 0
    # a hook (a tracker, say) sees every frame, and then nothing is skipped
    seen = []
    hooked = decode(None, video, tmp_path / "fast", cfg, hooks={"n": lambda frame: seen.append(frame.time) or [1]})
    assert hooked.frames_skipped == 0 and len(seen) == hooked.source_frames == 60

    real = media_mod.iter_decoded

    def two_frames_swapped(*args, **kwargs):  # the 20th and 21st video frames come in the wrong order
        events = list(real(*args, **kwargs))
        video = [i for i, e in enumerate(events) if e[0] == "video"]
        a, b = video[19], video[20]
        assert events[a][1] < events[b][1]
        events[a], events[b] = events[b], events[a]
        yield from events

    monkeypatch.setattr(media_mod, "iter_decoded", two_frames_swapped)
    path = tmp_path / "av30.mp4"
    assert both(path, path) == 0  # skipping began, stopped at the swap, and the file was decoded again


def test_pad_short_keeps_a_short_recording(tmp_path):
    make_av(tmp_path / "short.mp4", 1.2)
    pd.DataFrame([{"path": "short.mp4", "person_id": "A", "label": "x"}]).to_csv(tmp_path / "m.csv", index=False)
    res = curate(tmp_path / "m.csv", tmp_path / "o", workers=1, progress=False)
    assert res.quarantine.reason.tolist() == ["too_short"] and res.recordings.empty
    res = curate(tmp_path / "m.csv", tmp_path / "o", default_contract(pad_short=True), workers=1, progress=False)
    assert len(res.recordings) == 1 and res.recordings.n_windows[0] == 1


def test_cli_exit_codes(dirty, tmp_path, capsys):
    manifest, expected, _ = dirty
    assert main(["curate", str(manifest), "--out", str(tmp_path / "o"), "--labels", ",".join(LABELS)]) == 0
    out = capsys.readouterr().out
    assert "quarantined rows: %d" % len(expected) in out and "parkinsons" in out
    assert main(["curate", str(manifest), "--out", str(tmp_path / "o"), "--labels", ",".join(LABELS),
                 "--strict"]) == 1
    pd.DataFrame([{"path": "gone.mp4", "person_id": "A", "label": "x"}]).to_csv(tmp_path / "m.csv", index=False)
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o2")]) == 1
    assert main(["curate", str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "o3")]) == 2
    pd.DataFrame([{"file": "a.mp4", "who": "A"}]).to_csv(tmp_path / "cols.csv", index=False)
    assert main(["curate", str(tmp_path / "cols.csv"), "--out", str(tmp_path / "o4")]) == 2
    assert "--person-col" in capsys.readouterr().err


def test_custom_column_names(cohort, tmp_path):
    m = pd.read_csv(cohort / "manifest.csv").rename(columns={"path": "media", "person_id": "subject",
                                                             "label": "diagnosis"})
    m["media"] = [str(cohort / p) for p in m.media]
    m = m.drop(columns=["keypoints"]).head(2)
    m.to_csv(tmp_path / "m.csv", index=False)
    code = main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--path-col", "media",
                 "--person-col", "subject", "--label-col", "diagnosis", "--workers", "1"])
    assert code == 0
    rec = pd.read_csv(tmp_path / "o" / "recordings.csv")
    assert len(rec) == 2 and rec.modalities.tolist() == ["audio+video"] * 2


def test_media_errors_carry_reasons(tmp_path):
    (tmp_path / "r.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError) as e:
        decode(tmp_path / "r.mp4", tmp_path / "r.mp4", tmp_path)
    assert e.value.reason == "unreadable"


def test_rows_that_cannot_be_read_never_stop_a_run(cohort, tmp_path):
    """A row with too many fields, a directory named like a video, paths out of the data root, a path with a
    NUL character: each quarantined with its reason; the rows after them keep their numbers and are curated."""
    d = tmp_path / "data"
    (d / "rec" / "x.mp4").mkdir(parents=True)
    shutil.copy(cohort / "recordings" / "P001_s1.mp4", d / "rec" / "a.mp4")
    shutil.copy(cohort / "recordings" / "P002_s1.mp4", d / "rec" / "b.mp4")
    shutil.copy(cohort / "recordings" / "P003_s1.mp4", tmp_path / "outside.mp4")
    (d / "m.csv").write_text("path,person_id,label\n"
                             "rec/a.mp4,P1,healthy\n"
                             "rec/a.mp4,P4,healthy,extra,fields\n"
                             "rec/x.mp4,P3,healthy\n"
                             "../outside.mp4,P6,healthy\n"
                             f"{tmp_path / 'outside.mp4'},P7,healthy\n"
                             "rec/b.mp4,NA,parkinsons\n"
                             "rec/a\x00.mp4,P8,healthy\n")
    res = curate(d / "m.csv", tmp_path / "out", labels=LABELS, workers=1, progress=False,
                 contract=default_contract(modalities=["audio"]))
    got = dict(zip(res.quarantine.row, res.quarantine.reason))
    assert got == {1: "bad_fields", 2: "unreadable", 3: "outside_root",  # an absolute path is the user's choice
                   6: "missing_file"}  # a NUL character: a name no file has
    assert sorted(res.recordings.person_id) == ["NA", "P1", "P7"]  # NA stays a person
    confined = curate(d / "m.csv", tmp_path / "out2", labels=LABELS, workers=1, progress=False, root=d,
                      contract=default_contract(modalities=["audio"]))
    assert dict(zip(confined.quarantine.row, confined.quarantine.reason))[4] == "outside_root"  # with --root


def test_windows_failing_the_quality_gates_are_counted_and_can_be_dropped(tmp_path):
    """Silence is never learnt as a class: each window's gates are in windows.csv and the summary, and
    --drop-gated leaves failing windows out (a recording with none left is quarantined as gated)."""
    rate, fps = 16000, 25
    t = np.arange(9 * rate) / rate
    voiced = (0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (t < 4.5)).astype(np.float32)  # 4.5 s voice, then silence
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(9 * fps))
    write_av(tmp_path / "half.mp4", frames, voiced, fps, rate, 160, 120)
    write_av(tmp_path / "silent.mp4", (np.full((120, 160, 3), 128, np.uint8) for _ in range(9 * fps)),
             np.zeros(9 * rate, np.float32), fps, rate, 160, 120)
    pd.DataFrame({"path": ["half.mp4", "silent.mp4"], "person_id": ["A", "B"],
                  "label": ["healthy", "parkinsons"]}).to_csv(tmp_path / "m.csv", index=False)
    contract = default_contract(modalities=["audio", "video"])
    kept = curate(tmp_path / "m.csv", tmp_path / "kept", contract=contract, labels=LABELS, workers=1, progress=False)
    gates = kept.summary["window_gates"]
    assert gates["audio"]["silence"] >= 7 and gates["audio"]["ok"] >= 1 and gates["video"]["frozen"] == 7
    w = pd.read_csv(tmp_path / "kept" / "windows.csv", keep_default_na=False)
    assert set(w.quality_audio) >= {"ok", "silence"} and len(w) == 14
    dropped = curate(tmp_path / "m.csv", tmp_path / "dropped", contract=contract, labels=LABELS, workers=1,
                     progress=False, drop_gated=True)
    wd = pd.read_csv(tmp_path / "dropped" / "windows.csv", keep_default_na=False)
    assert len(wd) >= 1 and (wd.quality_audio == "ok").all() and (wd.quality_video == "ok").all()
    assert dict(zip(dropped.quarantine.row, dropped.quarantine.reason)) == {1: "gated"}
    assert dropped.summary["dropped_windows"] == 14 - len(wd)
    from symptomfuse.data.dataset import load_curated

    ws = load_curated(tmp_path / "dropped", ["audio"])  # the kept windows' own features, not the first ones
    full = load_curated(tmp_path / "kept", ["audio"])
    assert np.array_equal(ws.inputs["audio"], full.inputs["audio"][w.index[(w.recording_id == wd.recording_id[0])
                                                                          & w.window.isin(wd.window)]])


def test_a_curated_folder_whose_cache_entries_are_gone_says_to_curate_again(tmp_path):
    """A cache entry missing or in an older layout (e.g. a curated folder from an older version) is a
    message that says what to do, not a KeyError; curating again with the same --out repairs it."""
    from symptomfuse.data.dataset import load_curated
    from symptomfuse.errors import UsageError

    make_av(tmp_path / "a.mp4", 4.0)
    pd.DataFrame({"path": ["a.mp4"], "person_id": ["A"], "label": ["healthy"]}).to_csv(tmp_path / "m.csv", index=False)
    contract = default_contract(modalities=["audio"])
    curate(tmp_path / "m.csv", tmp_path / "c", contract=contract, labels=LABELS, workers=1, progress=False)
    before = np.asarray(load_curated(tmp_path / "c").inputs["audio"])
    entry = next(p for p in (tmp_path / "c" / "cache").glob("??/*") if p.is_dir())
    shutil.rmtree(entry)
    np.savez(entry.with_suffix(".npz"), audio=before)  # the layout of an older version
    with pytest.raises(UsageError, match="run `symptomfuse curate` again"):
        load_curated(tmp_path / "c")
    curate(tmp_path / "m.csv", tmp_path / "c", contract=contract, labels=LABELS, workers=1, progress=False)
    assert np.array_equal(np.asarray(load_curated(tmp_path / "c").inputs["audio"]), before)


WORKER = """
import json, sys
from pathlib import Path
from symptomfuse.contract import FeatureContract
from symptomfuse.data.candidate import Candidate
from symptomfuse.data.featurize import featurize_job

curated, cache, files = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
contract = FeatureContract.load(curated)
c = Candidate(0, "P", contract.classes[0], "1", "", tuple(contract.modalities), files={k: Path(v) for k, v in files.items()})
_, _, meta = featurize_job((c, contract, "ab" * 32, cache))
print(json.dumps({"status": meta["status"], "pandas": "pandas" in sys.modules}))
"""


def test_a_worker_featurizes_without_importing_pandas(cohort, tmp_path):
    """What a curation worker imports before its first job is paid at every curation's start: the job's
    module leaves pandas (about half a second) out, and gives the same features as curation in-process."""
    import json
    import subprocess
    import sys

    rows = pd.read_csv(cohort / "manifest.csv").head(1)
    rows["path"] = [str(cohort / p) for p in rows.path]
    rows["keypoints"] = [str(cohort / p) for p in rows.keypoints]
    rows.to_csv(tmp_path / "m.csv", index=False)
    here = curate(tmp_path / "m.csv", tmp_path / "out", labels=LABELS, workers=1, progress=False)
    files = json.loads(here.recordings.files[0])
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "out"), str(tmp_path / "worker_cache"),
                           json.dumps(files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "ok", "pandas": False}
    ours = FeatureCache(tmp_path / "out" / "cache").load(here.recordings.cache_key[0])
    theirs = FeatureCache(tmp_path / "worker_cache").load("ab" * 32)
    assert sorted(ours) == sorted(theirs) and ours
    for name in ours:
        np.testing.assert_array_equal(ours[name][:], theirs[name][:])


def test_more_workers_than_cpus_run_one_per_cpu(cohort, tmp_path, monkeypatch, capsys):
    """--workers 100000 would start one process per recording (100 MB and half a second each): it runs one
    per CPU this process may use, and says so."""
    import os

    import symptomfuse.data.curate as curate_mod

    rows = pd.read_csv(cohort / "manifest.csv").head(3)
    rows["path"] = [str(cohort / p) for p in rows.path]
    rows["keypoints"] = [str(cohort / p) for p in rows.keypoints]
    rows.to_csv(tmp_path / "m.csv", index=False)
    asked, run_jobs = [], curate_mod.run_jobs

    def recorded(fn, jobs, workers, *a, **k):
        asked.append(workers)
        return run_jobs(fn, jobs, workers, *a, **k)

    monkeypatch.setattr(curate_mod, "run_jobs", recorded)
    cpus = len(os.sched_getaffinity(0))
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--labels", "healthy,parkinsons",
                 "--workers", "100000"]) == 0
    assert asked == [cpus]
    assert f"--workers 100000: this process may use {cpus} CPU(s), so {cpus} worker process(es) run" in capsys.readouterr().err
    assert main(["curate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "one"), "--labels", "healthy,parkinsons",
                 "--workers", "1"]) == 0
    assert asked == [cpus, 1] and "worker process(es) run" not in capsys.readouterr().err


def test_audio_of_eight_or_more_channels_decodes(tmp_path):
    """PyAV 18 crashed the process (a segmentation fault) reading planar audio of 8 channels, which
    curation's batched resampling did: the whole curation died. Such files now decode like any other
    (in a subprocess here, so that a crash fails this test instead of the test run)."""
    import subprocess
    import sys

    layouts = {1: "mono", 8: "7.1", 16: "hexadecagonal"}
    for channels, layout in layouts.items():  # the tone on every channel
        pan = f"pan={layout}|" + "|".join(f"c{i}=c0" for i in range(channels))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000",
                        "-t", "3", "-af", pan, "-c:a", "aac", str(tmp_path / f"{channels}.m4a")], check=True)
    code = ("import sys, tempfile, numpy as np\nfrom pathlib import Path\nfrom symptomfuse.data.media import decode\n"
            "from symptomfuse.features.video import FrameConfig\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    a = decode(Path(sys.argv[1]), None, Path(d), FrameConfig(fps=25), {}).audio[:]\n"
            "print(len(a), float(np.sqrt(np.mean(a[4000:40000] ** 2))))\n")
    got = {}
    for channels in layouts:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{channels}.m4a")], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{channels} channels: exit {done.returncode} {done.stderr[-500:]}"
        n, rms = done.stdout.split()
        got[channels] = (int(n), float(rms))
    assert all(abs(n - 48000) < 600 for n, _ in got.values()), got  # 3 s at 16 kHz
    assert got[8][1] > 0.5 * got[1][1] and got[16][1] > 0.5 * got[1][1], got  # the tone, mixed down to mono


def test_a_phone_video_stored_on_its_side_is_turned_upright(tmp_path):
    """A phone stores a portrait video on its side, with a display matrix saying how to turn it (the old
    `rotate` tag). Curation, the live engine and the landmark trackers see it as a player shows it: the
    same frames, to the bit, as the same picture stored upright (lossless 4:2:0 here), and its size as shown."""
    import subprocess

    import av

    from symptomfuse.features.video import upright_rgb

    def ffmpeg(*args):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)

    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=200", "-t", "4",
           "-pix_fmt", "yuv420p", "-c:v", "libx264", "-qp", "0", "-c:a", "aac", "-shortest", str(tmp_path / "base.mp4"))
    for degrees, turn in ((90, "transpose=2"), (180, "hflip,vflip"), (270, "transpose=1")):
        ffmpeg("-i", str(tmp_path / "base.mp4"), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}",
               str(tmp_path / f"tagged{degrees}.mp4"))
        ffmpeg("-noautorotate", "-i", str(tmp_path / "base.mp4"), "-vf", turn, "-pix_fmt", "yuv420p", "-c:v", "libx264",
               "-qp", "0", "-c:a", "copy", str(tmp_path / f"upright{degrees}.mp4"))
        got = {}
        for kind in ("tagged", "upright"):
            path = tmp_path / f"{kind}{degrees}.mp4"
            (tmp_path / f"scratch_{kind}{degrees}").mkdir()
            decoded = decode(path, path, tmp_path / f"scratch_{kind}{degrees}", FrameConfig(fps=25))
            with av.open(str(path)) as c:
                first = upright_rgb(next(iter(c.decode(video=0))))
            got[kind] = (np.asarray(decoded.frames[:]), decoded.source_size, first)
        (a, size_a, rgb_a), (b, size_b, rgb_b) = got["tagged"], got["upright"]
        assert size_a == size_b == ((120, 160) if degrees != 180 else (160, 120))
        assert a.shape == b.shape and np.array_equal(a, b), f"{degrees}: {np.abs(a.astype(int) - b).mean()}"
        assert np.array_equal(rgb_a, rgb_b) and rgb_a.shape == (size_a[1], size_a[0], 3)
    (tmp_path / "scratch_base").mkdir()
    base = decode(tmp_path / "base.mp4", tmp_path / "base.mp4", tmp_path / "scratch_base", FrameConfig(fps=25))
    assert not np.array_equal(np.asarray(base.frames[:]), a)  # turning changes the picture
