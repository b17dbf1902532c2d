"""Capture-to-prediction latency of ``symptomfuse serve`` in headless Chromium, with 1, 4 and 8 sessions.

Latency is measured in the page, on the page's clock: from the moment a video frame leaves the page's
encoder (an encoded-frame transform on the sender; capture + encode is a few ms earlier still) to the
moment the prediction whose window that frame completed arrives over the data channel. The server sends,
with every prediction, the RTP timestamp of the newest video frame the engine had been given; the page
maps it back to its own frame. So the figure includes encoding, the network (loopback), jitter buffer and
decoding in aiortc, queueing, the engine (features + models) and the data channel. It does not include
the window itself: a prediction is about the last 3 s, and comes out once that window's last frame is in.

For each session count, the script makes a network namespace with only loopback up, starts
``symptomfuse serve`` in it, and opens one headless Chromium with that many tabs, each a session fed by
the same fake camera and microphone (a file, looped). It counts only predictions that arrive while every
tab is streaming. Needs root, chromium and chromium-driver (``make system-deps``) and an exported model.

    python benchmarks/webrtc_bench.py [--model demo_out/model] [--sessions 1,4,8] [--seconds 20]

Prints a table and writes benchmarks/results/webrtc_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))  # the headless-Chromium harness lives with the tests

from headless import NetNamespace, run_bounded, stop_process, to_y4m_wav  # noqa: E402


def server_cpu_seconds(ns: NetNamespace) -> float:
    """User + system CPU seconds so far of the server's processes (front and workers) in the namespace."""
    total = 0.0
    for pid in ns.pids():
        try:
            if b"symptomfuse.cli" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_once(model: Path, n: int, feed: tuple[Path, Path], seconds: float, port: int, work: Path,
             backend: str, browser_nice: int = 0, workers: int = 1) -> dict:
    events_log, result = work / f"events_{n}.jsonl", work / f"result_{n}.json"
    server_log_path = work / f"server_{n}.log"
    server_log_file = open(server_log_path, "w")
    with NetNamespace() as ns:
        server = subprocess.Popen(
            ns.prefix + [sys.executable, "-m", "symptomfuse.cli", "serve", "--model", str(model), "--port", str(port),
                         "--backend", backend, "--ice-addresses", "127.0.0.1", "--event-log", str(events_log),
                         "--max-sessions", str(n + 2), "--log-level", "warning", "--workers", str(workers),
                         "--max-sessions-per-client", str(n + 2),  # every tab comes from one address here
                         "--landmarks", "none"],  # as measured before serve ran MediaPipe (see stream_bench)
            stdout=server_log_file, stderr=subprocess.STDOUT)
        started = time.monotonic()
        try:
            driver = run_bounded(
                ns.prefix + ["nice", "-n", str(browser_nice), sys.executable, str(ROOT / "tests" / "browser" / "headless.py"), "--url", f"http://127.0.0.1:{port}/",
                             "--feed", f"bench:{feed[0]}:{feed[1]}", "--tabs", str(n), "--seconds", str(seconds),
                             "--timeout", str(60 + 4 * n + seconds), "--out", str(result)],
                timeout=120 + 4 * n + seconds)
            server_cpu_s, wall_s = server_cpu_seconds(ns), time.monotonic() - started
        finally:
            stop_process(server, timeout=15)
            server_log_file.close()
            server_log = server_log_path.read_text(errors="replace")
    if driver.returncode != 0:
        raise RuntimeError(f"{n} sessions: the browser driver failed:\n{driver.stderr[-3000:]}\n{server_log[-3000:]}")
    pages = json.loads(result.read_text())["pages"].values()
    lat = np.concatenate([np.asarray(p["latencies_ms"][p["steady_from"]:], float) for p in pages])
    engine = np.asarray([e["latency_ms"] for p in pages for e in p["events"][-20:]], float)
    first = np.asarray([p["first_prediction_s"] for p in pages])
    log = [json.loads(line) for line in events_log.read_text().splitlines()]
    ends = [e["counts"] for e in log if e["type"] == "end"]
    video = sum(c["video"] for c in ends)
    dropped = sum(c["dropped_video"] for c in ends)
    # frames a second the server received, over the 2 s before each prediction while every page streamed
    fps = [v for p in pages for v in p["video_fps"][p["steady_events_from"]:] if v is not None]
    n_events = sum(len(p["events"]) for p in pages)
    late = sum(p["video_late"] for p in pages)
    return {"sessions": n, "predictions": int(len(lat)),
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
            "engine_p50_ms": float(np.percentile(engine, 50)) if len(engine) else None,
            "first_prediction_s_max": float(first.max()), "video_frames": int(video),
            "dropped_video_share": dropped / video if video else 0.0,
            "video_fps_received_median": float(np.median(fps)) if fps else None,
            "video_fps_sent": [s[0]["fps"] for p in pages for s in [p["send_stats"]] if s],
            "predictions_without_video_share": late / n_events if n_events else None,
            "unmatched": int(sum(p["unmatched"] for p in pages)),
            "server_cores": server_cpu_s / wall_s, "load_avg_1min": os.getloadavg()[0],
            "video_send": [p["video_send"] for p in pages][:1],
            "send_stats": [p["send_stats"] for p in pages]}


def fmt(value, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model",
                   help="an export folder (`symptomfuse export`; `make demo` writes demo_out/model)")
    p.add_argument("--sessions", default="1,4,8", help="comma-separated concurrent browser sessions")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured once every session streams")
    p.add_argument("--media", type=Path, default=ROOT / "data" / "grid" / "sbwe5n.mpg",
                   help="a file with sound and picture for the fake camera and microphone (looped)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--workers", type=int, default=1, help="server processes (`serve --workers`)")
    p.add_argument("--browser-nice", type=int, default=0,
                   help="run the browsers at this nice level, so that on one machine the server comes first "
                        "(as if the browsers ran on other machines)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "webrtc_bench.json")
    args = p.parse_args(argv)
    if not (args.model / "export.json").exists():
        print(f"error: no exported model at {args.model}: run `make demo`, or give --model DIR from "
              "`symptomfuse export`", file=sys.stderr)
        return 2
    why = NetNamespace.available()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="sf-webrtc-bench-") as tmp:
        work = Path(tmp)
        feed = to_y4m_wav(args.media, work, "feed")
        for n in (int(v) for v in args.sessions.split(",")):
            t0 = time.perf_counter()
            rows.append(run_once(args.model, n, feed, args.seconds, args.port, work, args.backend, args.browser_nice,
                                 args.workers))
            rows[-1]["wall_s"] = time.perf_counter() - t0
            print(f"{n} session(s): {rows[-1]}", flush=True)
    print("\n| sessions | predictions timed | capture-to-prediction p50 (ms) | p95 (ms) | engine p50 (ms) | "
          "video fps received | predictions without their video | first prediction, slowest (s) | server cores |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['sessions']} | {r['predictions']} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | "
              f"{fmt(r['engine_p50_ms'])} | {fmt(r['video_fps_received_median'], '.1f')} | "
              f"{100 * (r['predictions_without_video_share'] or 0):.0f}% | {r['first_prediction_s_max']:.1f} | "
              f"{r['server_cores']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "model": str(args.model), "media": str(args.media),
                                    "seconds": args.seconds, "backend": args.backend, "browser_nice": args.browser_nice, "workers": args.workers, "cpus": os.cpu_count(),
                                    "machine": platform.platform(), "python": platform.python_version()}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
