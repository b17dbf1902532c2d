"""Every performance benchmark in one run, each figure beside its floor measured in the same run.

1. synth: a cohort of --people people (wall time, peak memory).
2. curation vs PyAV decode-only on the same files, with 1 and 2 processes, and hand-landmark curation
   (``--hand-landmarks mediapipe``) vs MediaPipe Hands alone on the same frames (``curate_bench.py``);
   and one plain ``symptomfuse curate`` for its wall time and peak memory.
3. training: windows per second of one network in one process against data-parallel over 2 processes,
   and a whole run's model-folds over 1 and 2 workers (``train_bench.py``).
4. streaming: per-update CPU against the models' forward alone, and how many real-time streams fit on
   this machine against the number the forward alone would allow (``stream_bench.py``, onnx backend).
5. WebRTC: capture-to-prediction p95 in headless Chromium with 1 and 4 sessions against the engine's own
   latency in-process (``webrtc_bench.py``; needs root for a network namespace, and Chromium).
6. GPU: when torch sees one, the training benchmark again with ``--device cuda``.

Peak memory is the peak resident set of the largest process of each step. Each benchmark writes its
own JSON under ``benchmarks/results/all/``; this script writes ``benchmarks/results/all.json`` and the
README's performance table, ``benchmarks/results/all.md``.

    python benchmarks/run_all.py [--people 48] [--skip webrtc] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def step(name: str, cmd: list[str], log: dict) -> None:
    """Run a step; record its wall time and peak memory in ``log``; stop the whole run if it fails."""
    print(f"== {name}: {' '.join(map(str, cmd))}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd])
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    log[name] = {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mb": usage.ru_maxrss // 1024,
                 "exit": code}
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code})")


def row(figure: str, measured: float, floor: float, floor_name: str, goal: str, met: bool | None,
        unit: str = "") -> dict:
    return {"figure": figure, "measured": measured, "floor": floor, "floor_is": floor_name,
            "ratio": round(measured / floor, 3) if floor else None, "goal": goal, "met": met, "unit": unit}


def table(out: Path, steps: dict) -> list[dict]:
    """The performance table's rows from the benchmarks' JSON files in ``out``."""
    rows = []
    cb = json.loads((out / "curate_bench.json").read_text())
    for r in cb["rows"]:
        rows.append(row(f"curation, {r['workers']} process(es)", r["curate_media_s_per_s"],
                        r["decode_only_media_s_per_s"], "PyAV decode-only", ">= 0.5", r["ratio"] >= 0.5,
                        "media s per s"))
    if cb.get("landmarks"):
        lm = cb["landmarks"]
        rows.append(row("hand-landmark curation (1 process)", round(lm["frames"] / lm["curate_s"], 1),
                        round(lm["frames"] / lm["mediapipe_alone_s"], 1), "MediaPipe Hands alone", "-", None,
                        "frames per s"))
    tb = json.loads((out / "train_bench.json").read_text())["rows"]
    fit = {r["setting"]: r for r in tb if r["what"].startswith("fit")}
    cmd = {r["setting"]: r for r in tb if r["what"].startswith("train command")}
    whole = [r for r in tb if r["what"].startswith("whole run")]
    one, ddp = "1 process, 1 thread", "DDP, 2 processes x 1 thread"
    rows.append(row("training (fit), DDP over 2 processes", fit[ddp]["windows_per_s"], fit[one]["windows_per_s"],
                    "1 process, 1 thread", ">= 1.6", fit[ddp]["windows_per_s"] >= 1.6 * fit[one]["windows_per_s"],
                    "windows per s"))
    if "median_windows_per_s" in fit[ddp]:  # each setting fitted several times: the medians beside the fastest
        rows.append(row(f"training (fit), DDP over 2 processes, median of {len(fit[ddp]['runs_s'])}",
                        fit[ddp]["median_windows_per_s"], fit[one]["median_windows_per_s"], "1 process, 1 thread (median)",
                        "-", None, "windows per s"))
    rows.append(row("training (fit), 1 process with 2 threads", fit["1 process, 2 threads"]["windows_per_s"],
                    fit[one]["windows_per_s"], "1 process, 1 thread", "-", None, "windows per s"))
    rows.append(row("train command, DDP over 2 processes", cmd[ddp]["windows_per_s"], cmd[one]["windows_per_s"],
                    "the command on 1 process", "-", None, "windows per s"))
    rows.append(row("whole run, model-folds over 2 workers", round(3600 / whole[1]["wall_s"], 1),
                    round(3600 / whole[0]["wall_s"], 1), "1 worker", "-", None, "runs per hour"))
    sb = json.loads((out / "stream_bench.json").read_text())["results"]["onnx"]
    rows.append(row("streaming, CPU per update (onnx)", round(sb["update_cpu_ms"], 2), round(sb["forward_cpu_ms"], 2),
                    "the models' forward alone", "<= 1.25", sb["update_over_forward"] <= 1.25, "ms"))
    forward_fit = (os.cpu_count() or 1) / (sb["forward_cpu_ms"] * sb["updates_per_replay"] / 1000 / sb["media_s"])
    rows.append(row("real-time streams that fit (onnx)", sb["streams_fit_estimate"], round(forward_fit),
                    "cores / the forward's CPU per media s", ">= 8", sb["streams_fit_estimate"] >= 8, "streams"))
    engine_p95 = sb["realtime_1"]["latency_p95_ms"]
    if (out / "webrtc_bench.json").exists():
        for r in json.loads((out / "webrtc_bench.json").read_text())["rows"]:
            rows.append(row(f"WebRTC p95, {r['sessions']} session(s)", round(r["p95_ms"], 1), round(engine_p95, 1),
                            "the engine in-process (p95)", "-", None, "ms"))
    for name, st in steps.items():
        rows.append({"figure": f"peak memory: {name}", "measured": st["peak_rss_mb"], "floor": None, "floor_is": "-",
                     "ratio": None, "goal": "-", "met": None, "unit": "MB"})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=48, help="people in the synthetic cohort (48: the demo's)")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out: webrtc, gpu")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: rebuild all.json's table and all.md from the JSON files of the last run")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    py, sf = sys.executable, [sys.executable, "-m", "symptomfuse.cli"]
    out = RESULTS / "all"
    out.mkdir(parents=True, exist_ok=True)
    import torch

    steps: dict = json.loads((RESULTS / "all.json").read_text())["steps"] if args.table_only else {}
    tmp = Path(tempfile.mkdtemp(prefix="run_all_"))
    try:
        if not args.table_only:
            cohort, curated = tmp / "cohort", tmp / "curated"
            step("synth", [*sf, "synth", "--out", cohort, "--people", args.people, "--seed", "0"], steps)
            step("curate", [*sf, "curate", cohort / "manifest.csv", "--out", curated, "--labels",
                            "healthy,parkinsons"], steps)
            step("curate_bench", [py, HERE / "curate_bench.py", "--cohort", cohort, "--repeats", "2", "--landmarks",
                                  "4", "--out", out / "curate_bench.json"], steps)
            step("train_bench", [py, HERE / "train_bench.py", "--curated", curated, "--out",
                                 out / "train_bench.json"], steps)
            step("stream_bench", [py, HERE / "stream_bench.py", "--backends", "onnx", "--streams", "8", "--repeats",
                                  "1", "--out", out / "stream_bench.json"], steps)
            if "webrtc" not in skip:
                model = tmp / "model"
                sys.path.insert(0, str(HERE))
                from stream_bench import _random_export  # the demo's architectures, random weights

                _random_export(model)
                step("webrtc_bench", [py, HERE / "webrtc_bench.py", "--model", model, "--sessions", "1,4",
                                      "--seconds", "15", "--backend", "onnx", "--out", out / "webrtc_bench.json"], steps)
            if "gpu" not in skip and torch.cuda.is_available():
                step("train_bench_gpu", [py, HERE / "train_bench.py", "--curated", curated, "--device", "cuda",
                                         "--out", out / "train_bench_gpu.json"], steps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = table(out, steps)
    record = {"rows": rows, "steps": steps, "people": args.people,
              "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    lines = ["| figure | measured | floor (same run) | ratio | goal | met |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        floor = "-" if r["floor"] is None else f"{r['floor']} ({r['floor_is']})"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['figure']} | {r['measured']} {r['unit']} | {floor} | {r['ratio'] or '-'} | {r['goal']} | {met} |")
    from symptomfuse.atomic import atomic_write_text

    atomic_write_text(RESULTS / "all.json", json.dumps(record, indent=1))
    atomic_write_text(RESULTS / "all.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {RESULTS / 'all.json'} and {RESULTS / 'all.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
