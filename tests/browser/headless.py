"""A headless Chromium with a fake camera and microphone fed from files, pointed at a running server.

Used by the browser test and ``benchmarks/webrtc_bench.py``; nothing here runs when you ``serve``.

* :func:`to_y4m_wav` converts any media file (PyAV) into what Chromium's fake capture devices play in a
  loop: raw YUV4MPEG2 video and 16-bit mono WAV.
* :class:`NetNamespace` makes a network namespace with only loopback up (``ip netns``; needs root), so
  the server, the browser and their WebRTC traffic are isolated from every real network.
* ``python tests/browser/headless.py`` (run inside the namespace) opens one Chromium per ``--feed``
  (via Selenium and the system chromedriver; never a downloaded browser), opens ``--tabs`` pages each,
  lets them stream for ``--seconds``, and writes what the pages received as JSON, plus screenshots.
  With ``--guided`` each page runs a guided session instead, until its session result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from symptomfuse.serve.workers import NO_PROXY

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1200,820",
    "--allow-loopback-in-peer-connection", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    # background tabs must keep streaming (several sessions in one browser)
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


# -- media -------------------------------------------------------------------------------------------------
def to_y4m_wav(src: Path, out_dir: Path, name: str | None = None, seconds: float | None = None,
               rate: int = 48000) -> tuple[Path, Path]:
    """Decode ``src`` to ``NAME.y4m`` (yuv420p, its own size and frame rate) and ``NAME.wav`` (mono s16)."""
    import av

    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or src.stem
    y4m, wav = out_dir / f"{name}.y4m", out_dir / f"{name}.wav"
    with av.open(str(src)) as c:
        vs = c.streams.video[0]
        fps = vs.average_rate or vs.guessed_rate or 25
        num, den = fps.numerator, fps.denominator
        limit = None if seconds is None else int(round(seconds * num / den))
        with open(y4m, "wb") as f:
            n = 0
            for frame in c.decode(vs):
                if limit is not None and n >= limit:
                    break
                if n == 0:
                    w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
                    f.write(f"YUV4MPEG2 W{w} H{h} F{num}:{den} Ip A1:1 C420jpeg\n".encode())
                img = frame.reformat(width=w, height=h, format="yuv420p").to_ndarray()  # (h*3/2, w) planes
                f.write(b"FRAME\n")
                f.write(np.ascontiguousarray(img).tobytes())
                n += 1
    if n == 0:
        raise ValueError(f"{src}: no video frames to convert")
    with av.open(str(src)) as c:
        if not c.streams.audio:
            raise ValueError(f"{src}: no audio stream; the fake microphone needs one")
        rs = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = []
        for frame in c.decode(c.streams.audio[0]):
            for out in rs.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in rs.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype("<i2")
    if seconds is not None:
        pcm = pcm[: int(seconds * rate)]
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return y4m, wav


# -- isolation ---------------------------------------------------------------------------------------------
class NetNamespace:
    """``with NetNamespace("sf-test") as ns: subprocess.Popen(ns.prefix + [...])`` - only loopback inside."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"sf-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.prefix = ["ip", "netns", "exec", self.name]

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be made here, else why not."""
        if shutil.which("ip") is None:
            return "`ip` (iproute2) is not installed"
        if os.geteuid() != 0:
            return "making a network namespace needs root"
        return None

    def __enter__(self) -> "NetNamespace":
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=10)
        try:
            subprocess.run(self.prefix + ["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        except BaseException:
            self.__exit__()
            raise
        return self

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10)
        return [int(p) for p in out.stdout.split()]

    def __exit__(self, *exc) -> None:
        # whatever still runs in the namespace was started by us (a browser left by a killed driver): end it
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline and self.pids():
                time.sleep(0.1)
        subprocess.run(["ip", "netns", "delete", self.name], timeout=10, check=False)


def run_bounded(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout end the whole group (a driver and its browser)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
        out, err = proc.communicate()
        err += f"\n(timed out after {timeout:.0f} s and was stopped)"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; the process only (it was started by us)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the browser ---------------------------------------------------------------------------------------------
def chromium_paths() -> tuple[str, str]:
    chromium = os.environ.get("SYMPTOMFUSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("SYMPTOMFUSE_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        raise FileNotFoundError("Chromium and its driver are needed: apt-get install chromium chromium-driver "
                                "(`make system-deps` does it)")
    return chromium, driver


def require_browser() -> None:
    """In a test: skip when a network namespace or Chromium cannot be had here, or fail instead when
    SYMPTOMFUSE_REQUIRE_BROWSER=1 (``make test`` sets it, so that CI never skips a browser test)."""
    import pytest

    why = NetNamespace.available()
    if why is None:
        try:
            chromium_paths()
        except FileNotFoundError as exc:
            why = str(exc)
    if why:
        if os.environ.get("SYMPTOMFUSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test cannot run: {why}")
        pytest.skip(why)


def launch(video: Path, audio: Path, profile: Path, extra: list[str] = ()):
    """A headless Chromium (Selenium) whose fake camera plays ``video`` (.y4m) and microphone ``audio`` (.wav)."""
    os.environ.setdefault("SE_OFFLINE", "true")          # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={video}",
                 f"--use-file-for-fake-audio-capture={audio}", f"--user-data-dir={profile}", *extra]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


STATE_JS = """
const s = window.sf || {};
return {state: s.state || null, session: s.session || null, error: s.error || null,
        n: (s.events || []).length, latencies: (s.latencies || []).slice(), videoSend: s.videoSend || null,
        unmatched: s.unmatched || 0, videoLate: s.videoLate || 0, videoFps: (s.videoFps || []).slice(),
        fused: (s.events || []).map(e => e.fused ? e.fused.p : null),
        events: arguments[0] ? (s.events || []) : []};
"""


def wait_http(url: str, deadline: float) -> None:
    while True:
        try:
            with NO_PROXY.open(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no server answered at {url}")
        time.sleep(0.2)


@contextlib.contextmanager
def browsers(url: str, feeds: list[dict], timeout: float, window: tuple[int, int] | None = None):
    """Wait for the server's /health, then start one Chromium per feed (its fake camera and microphone
    playing the feed); yield the drivers and the deadline, and quit them all at the end."""
    deadline = time.monotonic() + timeout
    wait_http(url + "health", deadline)
    tmp = Path(tempfile.mkdtemp(prefix="sf-chromium-"))
    drivers = []
    try:
        for i, feed in enumerate(feeds):
            drv = launch(Path(feed["video"]), Path(feed["audio"]), tmp / f"profile{i}")
            drv.set_page_load_timeout(20)
            drv.set_script_timeout(10)
            if window is not None:
                drv.set_window_size(*window)
            drivers.append(drv)
        yield drivers, deadline
    finally:
        for drv in drivers:
            try:
                drv.quit()
            except Exception:  # noqa: BLE001 - a browser that is already gone
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def run_feeds(url: str, feeds: list[dict], seconds: float, tabs: int = 1, out_dir: Path | None = None,
              query: str = "autostart=1&latency=1", stop_first: bool = True, timeout: float = 60.0) -> dict:
    """Open each feed's browser with ``tabs`` pages; once every page has had its first prediction, let
    them all stream ``seconds`` more.

    ``feeds``: ``[{"name", "video", "audio"}]``. Returns per page: the time from load to the first
    prediction, every fused probability, the capture-to-prediction latencies (ms; ``steady_from`` is the
    index of the first one measured while every page was streaming) and the events. The first page of
    each browser is stopped with its Stop button, the others just close (the peer leaves), so both ways
    of ending are exercised.
    """
    with browsers(url, feeds, timeout) as (drivers, deadline):
        pages = []
        for drv, feed in zip(drivers, feeds):
            for k in range(tabs):
                if k:
                    drv.switch_to.new_window("window")
                drv.get(f"{url}?{query}")
                pages.append({"feed": feed["name"], "driver": drv, "handle": drv.current_window_handle,
                              "t_load": time.monotonic(), "t_first": None, "steady_from": None, "steady_events": None,
                              "first": k == 0})
        t_all = None
        while t_all is None or time.monotonic() - t_all < seconds:
            for i, pg in enumerate(pages):
                pg["driver"].switch_to.window(pg["handle"])
                st = pg["driver"].execute_script(STATE_JS, False)
                pg["state"] = st
                if st["error"]:
                    raise RuntimeError(f"page {pg['feed']}#{i}: {st['error']}")
                if st["n"] and pg["t_first"] is None:
                    pg["t_first"] = time.monotonic()
            if t_all is None and all(pg["t_first"] is not None for pg in pages):
                t_all = time.monotonic()
                for pg in pages:
                    pg["steady_from"] = len(pg["state"]["latencies"])
                    pg["steady_events"] = pg["state"]["n"]
            if time.monotonic() > deadline:
                waiting = [f"{p['feed']}: {p.get('state', {}).get('state')}, {p.get('state', {}).get('n')} events"
                           for p in pages]
                raise TimeoutError(f"pages did not stream {seconds} s of predictions in {timeout} s: {waiting}")
            time.sleep(0.5)
        results = {}
        for i, pg in enumerate(pages):
            drv = pg["driver"]
            drv.switch_to.window(pg["handle"])
            st = drv.execute_script(STATE_JS, True)
            send = drv.execute_async_script(
                "const done = arguments[arguments.length - 1]; "
                "(window.sf && sf.sendStats ? sf.sendStats() : Promise.resolve(null)).then(done, () => done(null));")
            key = f"{pg['feed']}#{i}"
            results[key] = {"feed": pg["feed"], "session": st["session"],
                            "first_prediction_s": pg["t_first"] - pg["t_load"], "fused": st["fused"],
                            "latencies_ms": st["latencies"], "steady_from": pg["steady_from"],
                            "steady_events_from": pg["steady_events"],
                            "video_send": st["videoSend"], "unmatched": st["unmatched"],
                            "video_late": st["videoLate"], "send_stats": send, "video_fps": st["videoFps"],
                            "events": st["events"]}
            if out_dir is not None and pg["first"]:
                shot = Path(out_dir) / f"{pg['feed']}.png"
                drv.save_screenshot(str(shot))
                results[key]["screenshot"] = str(shot)
        if stop_first:
            for pg in pages:
                if pg["first"]:
                    pg["driver"].switch_to.window(pg["handle"])
                    pg["driver"].execute_script("document.getElementById('stop').click()")
            time.sleep(1.0)
        return results


GUIDE_JS = """
const s = window.sf || {};
return {state: s.state || null, error: s.error || null, guide: s.guide || null, n: (s.events || []).length};
"""


def run_guided(url: str, feeds: list[dict], out_dir: Path, timeout: float = 90.0) -> dict:
    """Open each feed's browser on ``?autostart=1&guided=1`` (the page starts a guided session as soon as it
    is connected) and wait until every page shows its session result. Returns per page what the page kept
    of the guided session (``sf.guide``: the plan, each phase as it came, the result, how many landmark
    overlays it drew), its number of live predictions and a screenshot of the page with the result."""
    # a window tall enough that the result, below the chart, is in the screenshot
    with browsers(url, feeds, timeout, window=(1200, 1150)) as (drivers, deadline):
        pages = []
        for drv, feed in zip(drivers, feeds):
            drv.get(f"{url}?autostart=1&guided=1")
            pages.append({"feed": feed["name"], "driver": drv, "t_load": time.monotonic(), "t_result": None})
        while not all(pg["t_result"] for pg in pages):
            for pg in pages:
                st = pg["driver"].execute_script(GUIDE_JS)
                pg["state"] = st
                if st["error"] or (st["guide"] or {}).get("error"):
                    raise RuntimeError(f"page {pg['feed']}: {st['error'] or st['guide']['error']}")
                if pg["t_result"] is None and (st["guide"] or {}).get("result"):
                    pg["t_result"] = time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError("no session result in time: " + "; ".join(
                    f"{pg['feed']}: {pg.get('state', {}).get('state')}, phases "
                    f"{((pg.get('state') or {}).get('guide') or {}).get('phases')}" for pg in pages))
            time.sleep(0.5)
        results = {}
        for pg in pages:
            drv = pg["driver"]
            time.sleep(0.3)  # one more overlay and chart update on screen
            st = drv.execute_script(GUIDE_JS)
            shot = Path(out_dir) / f"guided-{pg['feed']}.png"
            drv.save_screenshot(str(shot))
            results[pg["feed"]] = {"guide": st["guide"], "predictions": st["n"], "screenshot": str(shot),
                                   "result_after_s": pg["t_result"] - pg["t_load"]}
            drv.execute_script("document.getElementById('stop').click()")
        time.sleep(1.0)
        return results


def sessions_open(url: str) -> int:
    with NO_PROXY.open(url + "health", timeout=2) as r:
        return int(json.load(r)["sessions"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python tests/browser/headless.py",
        description="Stream files through headless Chromium pages (fake camera + microphone) to a running "
                    "`symptomfuse serve`, and write what the pages received as JSON. Run it where the server "
                    "is reachable, e.g. inside the same network namespace.")
    p.add_argument("--url", default="http://127.0.0.1:8080/", help="the server's page")
    p.add_argument("--feed", action="append", required=True, metavar="NAME:VIDEO.y4m:AUDIO.wav",
                   help="one browser per feed (repeat)")
    p.add_argument("--tabs", type=int, default=1, help="pages (sessions) per browser")
    p.add_argument("--token", default=None, help="the server's token (--token / SYMPTOMFUSE_TOKEN): in the page's address")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="seconds to stream once every page has had its first prediction")
    p.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    p.add_argument("--out", type=Path, required=True, help="JSON file of the results (screenshots beside it)")
    p.add_argument("--wait-closed", type=float, default=15.0,
                   help="then wait up to this long for the server to close every session")
    p.add_argument("--guided", action="store_true",
                   help="run a guided session on each page (one tab each) until its result, instead of streaming")
    args = p.parse_args(argv)
    feeds = []
    for spec in args.feed:
        name, video, audio = spec.split(":")
        feeds.append({"name": name, "video": video, "audio": audio})
    url = args.url if args.url.endswith("/") else args.url + "/"
    t0 = time.monotonic()
    if args.guided:
        results = run_guided(url, feeds, args.out.parent, timeout=args.timeout)
    else:
        query = "autostart=1&latency=1" + (f"&token={args.token}" if args.token else "")
        results = run_feeds(url, feeds, args.seconds, args.tabs, out_dir=args.out.parent, query=query,
                            timeout=args.timeout)
    deadline = time.monotonic() + args.wait_closed
    left = sessions_open(url)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = sessions_open(url)
    out = {"pages": results, "sessions_open_after_close": left,
           "wall_s": time.monotonic() - t0}
    args.out.write_text(json.dumps(out))
    if not args.guided:
        print(json.dumps({k: {"first_prediction_s": round(v["first_prediction_s"], 2), "n": len(v["fused"]),
                              "last_fused": v["fused"][-1] if v["fused"] else None}
                          for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
