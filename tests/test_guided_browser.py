"""A guided session end to end in a real browser: headless Chromium with a fake camera and microphone,
`symptomfuse serve`, WebRTC on loopback in a network namespace of its own (as test_serve_browser).

The model has two separately recorded tasks, voice (audio) and smile (face_measures), trained with
`--unit person` (tests/browser/live_model.py: synthetic vowels and real FSDD speech; every smile a variant
of one real GRID face, so the face part learns nothing: this test is about the mechanics). Two pages run a
guided session at once:
* the real GRID talking face (a healthy speaker, not in training): both tasks usable, the face found by
  FaceMesh on the server and drawn over the preview;
* a synthetic recording with voice signs and no face (a hand): the smile task has no usable window and
  is left out of the result, which says why.

Checked: the task sequence (voice, then smile, each prepared then recorded, then done); one session result
per page with the notice, an interval, usable windows and contributions per task; the face overlay drawn;
on the voice task the condition's voice scores above the healthy speaker's; the event log records the
guided session. A
screenshot of each page is saved (set SYMPTOMFUSE_ARTIFACTS=DIR to keep copies).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))

from symptomfuse import NOTICE  # noqa: E402
from symptomfuse.cli import main as cli  # noqa: E402
from headless import NetNamespace, require_browser, run_bounded, stop_process  # noqa: E402
from test_serve_browser import GRID_CLIP  # noqa: E402

PORT = 8767


@pytest.fixture(scope="module")
def guided_setup(tmp_path_factory):
    require_browser()
    from live_model import browser_feeds, guided_cohort

    root = tmp_path_factory.mktemp("guided-live")
    t0 = time.perf_counter()
    manifest = guided_cohort(root / "cohort", GRID_CLIP, people=16, recordings=2, seconds=5.0)
    assert cli(["curate", str(manifest), "--out", str(root / "curated"), "--modalities", "audio,face_measures",
                "--labels", "healthy,parkinsons", "--workers", "2"]) == 0
    assert cli(["train", str(root / "curated"), "--out", str(root / "run"), "--modalities", "audio,face_measures",
                "--unit", "person", "--fusion-modalities", "audio,face_measures", "--fusions", "gated", "--late", "",
                "--folds", "2", "--epochs", "10", "--fusion-epochs", "10", "--patience", "3", "--baselines", ""]) == 0
    assert cli(["export", str(root / "run"), "--out", str(root / "model"), "--fold", "0", "--no-onnx"]) == 0
    train_s = time.perf_counter() - t0
    feeds = browser_feeds(root, GRID_CLIP)
    return {"root": root, "model": root / "model", "feeds": feeds, "train_s": train_s}


def test_guided_session_in_headless_chromium(guided_setup):
    root, feeds = guided_setup["root"], guided_setup["feeds"]
    out = root / "browser"
    out.mkdir()
    events_log = root / "events.jsonl"
    server_log_path = root / "server.log"
    t0 = time.perf_counter()
    with open(server_log_path, "w") as server_log_file, NetNamespace() as ns:
        server = subprocess.Popen(
            ns.prefix + [sys.executable, "-m", "symptomfuse.cli", "serve", "--model", str(guided_setup["model"]),
                         "--port", str(PORT), "--ice-addresses", "127.0.0.1", "--event-log", str(events_log)],
            stdout=server_log_file, stderr=subprocess.STDOUT)
        try:
            driver = run_bounded(
                ns.prefix + [sys.executable, str(Path(__file__).parent / "browser" / "headless.py"),
                             "--url", f"http://127.0.0.1:{PORT}/", "--guided", "--timeout", "90",
                             "--out", str(out / "result.json"),
                             *[a for name, (v, w) in feeds.items() for a in ("--feed", f"{name}:{v}:{w}")]],
                timeout=150)
        finally:
            stop_process(server, timeout=15)
    server_log = server_log_path.read_text(errors="replace")
    assert driver.returncode == 0, f"browser driver failed:\n{driver.stdout}\n{driver.stderr[-4000:]}\n" \
                                   f"server log:\n{server_log[-4000:]}"
    assert server.returncode == 0, f"server did not exit cleanly:\n{server_log[-4000:]}"
    pages = json.loads((out / "result.json").read_text())["pages"]
    assert set(pages) == {"grid", "cond"}

    summary = {}
    for name, page in pages.items():
        guide = page["guide"]
        # the tasks in order, each prepared then recorded, then the session is done
        assert [s["name"] for s in guide["plan"]] == ["voice", "smile"]
        seen = [(p["step"], p["phase"]) for p in guide["phases"] if p["phase"] in ("prepare", "record", "done")]
        assert seen == [(0, "prepare"), (0, "record"), (1, "prepare"), (1, "record"), (2, "done")], guide["phases"]
        result = guide["result"]
        assert result["notice"] == NOTICE and result["schema"] == "symptomfuse-guided/1"
        voice, smile = result["steps"]
        assert (voice["name"], smile["name"]) == ("voice", "smile")
        assert voice["windows"] >= 5 and smile["windows"] >= 5  # 6 s of recording each, a window every 0.5 s
        assert voice["usable"]["audio"] >= 0.8 * voice["windows"], voice
        fused = result["fused"]
        lo, hi = fused["interval"]
        assert 0 <= lo <= hi <= 1 and fused["label"] in ("healthy", "parkinsons")
        assert Path(page["screenshot"]).stat().st_size > 10_000
        summary[name] = {"p": round(fused["p"], 3), "interval": [round(lo, 3), round(hi, 3)],
                         "modalities": fused["modalities"], "overlay": guide["overlay"],
                         "result_after_s": round(page["result_after_s"], 1),
                         "contributions": {s["name"]: s["contribution"] for s in result["steps"]}}
    print(f"\nguided browser test: model built in {guided_setup['train_s']:.0f} s, browsers + server "
          f"{time.perf_counter() - t0:.0f} s; {summary}; screenshots: {out}")
    grid, cond = pages["grid"]["guide"], pages["cond"]["guide"]
    # the real face: found in most of the smile task's windows, fused, and drawn over the preview
    smile = grid["result"]["steps"][1]
    assert smile["usable"]["face_measures"] >= 0.8 * smile["windows"], smile
    assert grid["result"]["fused"]["modalities"] == ["audio", "face_measures"]
    assert all(s["contribution"] is not None for s in grid["result"]["steps"])
    assert grid["overlay"]["face"] >= 20
    # a hand, no face: the smile task is left out of the result and says why
    smile = cond["result"]["steps"][1]
    assert smile["usable"] == {"face_measures": 0} and "no_face" in smile["quality"]["face_measures"], smile
    assert cond["result"]["fused"]["modalities"] == ["audio"]
    # the voice with signs of the condition scores above the healthy talking face on the voice task (the voice
    # model's own probability; the fused model of this tiny person-level fixture, 11 training people a fold,
    # stays near 0.5 and is not what is tested here)
    assert cond["result"]["steps"][0]["p"]["audio"] > grid["result"]["steps"][0]["p"]["audio"], summary

    log = [json.loads(line) for line in events_log.read_text().splitlines()]
    kinds = [e["type"] for e in log]
    assert kinds.count("guided_start") == 2 and kinds.count("guided_result") == 2
    keep = os.environ.get("SYMPTOMFUSE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name, page in pages.items():
            shutil.copy(page["screenshot"], Path(keep) / f"guided-{name}.png")
