"""Soak test of the live server (not CI): many WebRTC sessions held for minutes; does its memory grow?

Starts ``symptomfuse serve --model MODEL`` on loopback, then holds ``--sessions`` aiortc clients at once,
each playing a recording in a loop, for ``--minutes``. Every 15 s it records the server's resident memory
(RSS, from /proc) and the sessions open. Goal: RSS growth under 10% from the first minute to the end.
Prints a table and writes ``benchmarks/results/serve_soak.json``.

    make demo && .venv/bin/python benchmarks/serve_soak.py --sessions 10 --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import ClientSession

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(url: str, recording: Path, stop: asyncio.Event, stats: dict) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    while not stop.is_set():
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("events")
        channel.on("message", lambda m: stats.__setitem__("messages", stats["messages"] + 1))
        player = MediaPlayer(str(recording), loop=True)
        for track in (player.audio, player.video):
            if track is not None:
                pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        async with ClientSession() as http:
            async with http.post(url + "offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
                if r.status != 200:
                    stats["refused"] += 1
                    await pc.close()
                    await asyncio.sleep(1)
                    continue
                answer = await r.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        stats["sessions_started"] += 1
        await stop.wait()
        await pc.close()


async def soak(url: str, pid: int, recording: Path, sessions: int, minutes: float) -> dict:
    stop = asyncio.Event()
    stats = {"messages": 0, "refused": 0, "sessions_started": 0}
    tasks = [asyncio.ensure_future(client(url, recording, stop, stats)) for _ in range(sessions)]
    samples = []
    t0 = time.monotonic()
    async with ClientSession() as http:
        while time.monotonic() - t0 < minutes * 60:
            await asyncio.sleep(15)
            async with http.get(url + "health") as r:
                open_ = (await r.json())["sessions"]
            samples.append({"t_s": round(time.monotonic() - t0), "rss_mb": round(rss_mb(pid), 1),
                            "sessions": open_, "messages": stats["messages"]})
            print(f"{samples[-1]['t_s']:>5} s  RSS {samples[-1]['rss_mb']:>7.1f} MB  sessions {open_:>3}  "
                  f"predictions received {stats['messages']}", flush=True)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"samples": samples, **stats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "demo_out" / "model")
    parser.add_argument("--recording", type=Path, default=ROOT / "demo_out" / "cohort" / "recordings" / "P001_s1.mp4")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_soak.json")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "symptomfuse.cli", "serve", "--model", str(args.model),
                               "--port", str(args.port), "--ice-addresses", "127.0.0.1",
                               "--max-sessions", str(args.sessions + 2), "--log-level", "warning",
                               "--max-sessions-per-client", str(args.sessions + 2),
                               # as measured before the server ran MediaPipe for a hand model: the figures
                               # stay comparable (hand detection is measured in stream_bench)
                               "--landmarks", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if line.startswith("serving "):
                break
        url = f"http://127.0.0.1:{args.port}/"
        result = asyncio.run(soak(url, server.pid, args.recording, args.sessions, args.minutes))
    finally:
        server.terminate()
        server.wait(30)
    s = result["samples"]
    first = next((x["rss_mb"] for x in s if x["t_s"] >= 60), s[0]["rss_mb"])
    result.update(sessions=args.sessions, minutes=args.minutes, rss_first_minute_mb=first, rss_end_mb=s[-1]["rss_mb"],
                  growth=(s[-1]["rss_mb"] - first) / first)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n{args.sessions} sessions for {args.minutes:g} min: server RSS {first:.0f} MB after the first minute, "
          f"{s[-1]['rss_mb']:.0f} MB at the end ({result['growth']:+.1%}; goal under +10%); "
          f"{result['messages']} predictions received, {result['refused']} offers refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
