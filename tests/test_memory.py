"""Long recordings in bounded memory: arrays read from disk a slice at a time, curation a run of windows
at a time, training batches prepared from the cache when the prepared inputs would not fit."""

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from symptomfuse.data import featurize as featurize_mod
from symptomfuse.data.cache import FeatureCache
from symptomfuse.data.curate import curate, default_contract
from symptomfuse.data.dataset import load_curated
from symptomfuse.data.ondisk import NpyWriter, RowWriter, read_npy, write_npy
from symptomfuse.models.multimodal import MultimodalClassifier
from symptomfuse.train import fit as fit_mod
from symptomfuse.train.fit import (TrainConfig, WindowTensors, _Prepared, _Streamed, fit, predict_logits, prepare,
                                   prepared_bytes)
from symptomfuse.train.splits import person_folds

LABELS = ["healthy", "parkinsons"]


def test_disk_arrays_index_like_numpy(tmp_path):
    a = np.arange(7 * 3 * 2, dtype=np.float32).reshape(7, 3, 2)
    write_npy(tmp_path / "a.npy", a)
    d = read_npy(tmp_path / "a.npy")
    assert d.shape == a.shape and d.dtype == a.dtype and len(d) == 7
    for key in (slice(None), slice(2, 5), slice(-3, None), slice(5, 2), 3, -1, np.array([6, 0, 0, 3]),
                np.array([True, False, True, False, False, True, True]), (slice(1, 4), 0), (Ellipsis, -1),
                (np.array([2, 1]), slice(None), 1)):
        np.testing.assert_array_equal(d[key], a[key])
    np.testing.assert_array_equal(np.asarray(d), a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)  # a plain .npy file
    with pytest.raises(IndexError):
        d[7]
    with pytest.raises(IndexError):
        d[np.array([0, 9])]
    # a view through an index (frames at the shared rate -> decoded frames) and a run of rows
    w = RowWriter(tmp_path / "raw")
    w.append(a[:4])
    w.append(a[4:])
    w.close()
    idx = np.array([0, 0, 1, 3, 3, 6])
    np.testing.assert_array_equal(w.array(index=idx)[1:5], a[idx][1:5])
    np.testing.assert_array_equal(w.array(start=2, length=3)[:], a[2:5])
    assert [len(c) for c in w.array().chunks(3)] == [3, 3, 1]


def test_disk_arrays_refuse_what_they_cannot_read(tmp_path):
    write_npy(tmp_path / "a.npy", np.zeros((100, 8), np.float64))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-64])
    with pytest.raises(ValueError, match="truncated"):
        read_npy(tmp_path / "cut.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="unpickling"):
        read_npy(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    with pytest.raises(ValueError, match="not a NumPy array file"):
        read_npy(tmp_path / "junk.npy")
    w = NpyWriter(tmp_path / "short.npy", 5, (2,), np.float32)
    w.append(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="3 rows written of the 5"):
        w.close()
    assert not (tmp_path / "short.npy").exists()  # nothing half-written lands


def test_runs_of_windows_give_the_same_cache_as_one_run(cohort, tmp_path, monkeypatch):
    """Curation featurizes a recording a run of windows at a time; the runs' boundaries change nothing
    (but the last bits of a log-mel: BLAS sums a matrix product of another shape in another order)."""
    contract = default_contract(hop_s=0.5)  # 7 windows a recording: runs of 2 leave a partial last run
    rows = pd.read_csv(cohort / "manifest.csv").head(2)
    rows["path"] = [str(cohort / p) for p in rows.path]
    rows["keypoints"] = [str(cohort / p) for p in rows.keypoints]
    rows.to_csv(tmp_path / "m.csv", index=False)
    whole = curate(tmp_path / "m.csv", tmp_path / "whole", contract, labels=LABELS, workers=1, progress=False)
    monkeypatch.setattr(featurize_mod, "SECONDS_PER_RUN", 1.0)  # runs of 2 windows
    runs = curate(tmp_path / "m.csv", tmp_path / "runs", contract, labels=LABELS, workers=1, progress=False)
    assert (whole.recordings.n_windows == 7).all()
    pd.testing.assert_frame_equal(whole.windows, runs.windows)
    for key in whole.recordings.cache_key:
        a, b = FeatureCache(tmp_path / "whole" / "cache").load(key), FeatureCache(tmp_path / "runs" / "cache").load(key)
        assert sorted(a) == sorted(b) == ["audio", "audio_rms_db", "keypoints", "keypoints_landmarks", "video"]
        for name in a:
            if name == "audio":  # a spectrogram over a shorter span: the mel product rounds differently
                np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=0, atol=1e-4)
            else:
                np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
    assert not any((tmp_path / "runs" / "cache" / "tmp").iterdir())  # scratch files are gone


def test_a_fold_too_big_to_prepare_streams_its_batches(cohort, tmp_path, monkeypatch):
    """Over the memory budget, training prepares each batch from the cache when drawn: the batches are the
    ones the in-memory path gives, and with the scalers fitted on every training window, the same model."""
    curate(cohort / "manifest.csv", tmp_path / "c", labels=LABELS, workers=2, progress=False)
    ws = load_curated(tmp_path / "c", ["audio", "video"])
    f = person_folds(ws.people, ws.y, k=2, seed=0)[0][0]
    spec = {"audio": {"name": "logmel_cnn", "channels": [4, 8], "dim": 8},
            "video": {"name": "frames_cnn", "channels": [4, 4], "dim": 8}}
    model = MultimodalClassifier(spec, {"name": "gated"}, 2, init_seed=1)
    idx = [3, 0, 5]
    x, p = prepare(model, ws, f.train)
    got = _Streamed(model, ws, f.train).__getitems__(idx)
    want = _Prepared(WindowTensors(x, p), ws.y[f.train]).__getitems__(idx)
    for g, w in zip(got[:2], want[:2]):
        assert all(torch.equal(g[m], w[m]) for m in w)
    assert torch.equal(got[2], want[2])

    per_window = prepared_bytes(model, ws, f.train[:1])
    # the training windows fit, training + validation do not: streamed, scalers on every training window
    budget = (len(f.train) + 0.5) * per_window / 2**20
    cfg = TrainConfig(max_epochs=2, seed=4, modality_dropout=0.3)
    b, _ = fit(copy.deepcopy(model), ws, f.train, f.val, cfg)  # in memory
    streamed = []

    class Spy(_Streamed):
        def __init__(self, *a):
            streamed.append(len(a[2]))
            super().__init__(*a)

    monkeypatch.setattr(fit_mod, "_Streamed", Spy)
    a, _ = fit(copy.deepcopy(model), ws, f.train, f.val, replace(cfg, prepared_mb=budget))
    assert streamed == [len(f.train), len(f.val)]
    np.testing.assert_array_equal(predict_logits(a, ws, f.test), predict_logits(b, ws, f.test))
    # a training process's store of every window's inputs, with the same budget, holds none of them: the
    # fold streams as before, with the same numbers
    streamed.clear()
    store = fit_mod.PreparedStore(ws, budget)
    c, _ = fit(copy.deepcopy(model), ws, f.train, f.val, replace(cfg, prepared_mb=budget), store)
    assert streamed == [len(f.train), len(f.val)] and store.inputs(model) is None
    np.testing.assert_array_equal(predict_logits(c, ws, f.test, store=store), predict_logits(b, ws, f.test))


def test_a_killed_curations_scratch_is_swept(tmp_path):
    """Scratch and staging folders of a process that is gone are removed; a live process's are kept."""
    import subprocess
    import sys

    from symptomfuse.data.cache import _owner

    cache = FeatureCache(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = _owner().split(".")[0]
    gone = [tmp_path / "tmp" / f"decode.{host}.{dead.stdout.strip()}.abc", tmp_path / "ab" / f".ab12.{host}.{dead.stdout.strip()}.x"]
    kept = [tmp_path / "tmp" / f"decode.{_owner()}.def", tmp_path / "ab" / f".ab12.other-host.{dead.stdout.strip()}.y"]
    for p in gone + kept:
        p.mkdir(parents=True)
        (p / "audio").write_bytes(b"x")
    assert cache.sweep() == 2
    assert not any(p.exists() for p in gone) and all(p.exists() for p in kept)
