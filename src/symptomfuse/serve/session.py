"""One browser peer: its audio and video tracks -> its own streaming engine -> its data channel.

Each session owns an engine and a one-thread executor, so the engine's CPU work never runs on the event
loop (WebRTC receive loops keep running) and sessions never share engine state. Frames are queued as they
arrive and handed to the engine thread in batches. When the server falls behind (too many sessions for
its cores), a video frame that is more than ``max_lag_s`` late by the time the engine would take it is
skipped, so the delay stops growing; audio is never skipped. The lag and the count of skipped frames go
to the page with every prediction. A session ends when the page says ``stop``, when its peer leaves (the
connection fails or closes, or its tracks end), or when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from symptomfuse.errors import UsageError
from symptomfuse.stream.engine import NOTICE
from symptomfuse.stream.guided import GuidedSession
from symptomfuse.serve.media import MediaClock, audio_to_mono_float
from symptomfuse.serve.guard import token_ok

log = logging.getLogger("symptomfuse.serve")

FPS_SPAN_S = 2.0  # video frame rate received, over the last 2 s
VIDEO_SLACK_S = 0.06  # a video frame this close before a window's end completes it (1.5 frames at 25 fps)
OVERLAY_EVERY_S = 0.1  # landmarks for the page's overlay: at most 10 a second of media
# landmarks that are points in the picture (blendshapes are not), and every how many the overlay shows
OVERLAID = {"hands": 1, "face": 6}  # all 21 of a hand; every 6th of FaceMesh's 478


def overlay_points(item, every: int) -> list | None:
    """A ring's newest landmarks (every ``every``-th) as [[x, y], ...] rounded to 3 decimals, or None when
    none were found."""
    if item is None or not np.isfinite(item[1][:, :2]).all():
        return None
    return np.round(item[1][::every, :2].astype(float), 3).tolist()


class EventLog:
    """Append-only JSON-lines log of session events (predictions and lifecycle; never media content)."""

    def __init__(self, path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8") if path else None

    def write(self, session: str, kind: str, **fields: Any) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps({"time": time.time(), "session": session, "type": kind, **fields}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class Session:
    """Frames from one peer connection through one engine; events out over the data channel."""

    def __init__(self, pc, engine_factory: Callable[[], Any], event_log: EventLog | None = None,
                 max_lag_s: float = 1.0, on_closed: Callable[["Session"], None] | None = None,
                 token: str | None = None, auth_timeout_s: float = 5.0, media_timeout_s: float = 10.0) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.remote: str | None = None  # the client's address (per-client session limit)
        self.pc = pc
        self.engine = engine_factory()
        self.event_log = event_log or EventLog(None)
        self.max_lag_s = max_lag_s
        self.lag_s = 0.0
        self.on_closed = on_closed
        self.clock = MediaClock()
        self.channel = None
        self.closed = False
        # a server with a token checks it on the data channel too: the page's first message must carry it,
        # and nothing (not even "hello") is sent before it has; a wrong or missing one ends the session
        self._token, self._auth_timeout_s = token, auth_timeout_s
        self.authenticated = token is None
        self.counts = {"audio": 0, "video": 0, "dropped_video": 0, "events": 0}
        self._pending: deque = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{self.id}")
        self._media_timeout_s = media_timeout_s
        self._last_media = time.monotonic()  # when the newest sound or picture arrived (or the connection came)
        self._tasks: list[asyncio.Task] = [asyncio.ensure_future(self._worker()),
                                           asyncio.ensure_future(self._watch_media())]
        self._unsent: deque = deque(maxlen=64)
        self._last_rtp: int | None = None       # RTP timestamps: newest video frame pushed, first received
        self._last_video_t: float | None = None
        self._arrivals: deque = deque()           # arrival times of the last FPS_SPAN_S of video frames
        self._first_rtp: int | None = None
        self._disconnect_timer: asyncio.TimerHandle | None = None
        self.guided: GuidedSession | None = None  # a guided session, once the page asks for one
        self._media_t = 0.0  # media time of the newest sound or picture pushed to the engine
        self._overlay_t = -1.0  # media time of the last landmarks sent for the overlay
        self.event_log.write(self.id, "start")

        @pc.on("datachannel")
        def _on_channel(channel) -> None:
            self.channel = channel
            channel.on("message", self._on_message)
            channel.on("close", lambda: asyncio.ensure_future(self.close("data channel closed")))
            if channel.readyState == "open":
                self._on_open()
            else:
                channel.on("open", self._on_open)

        @pc.on("track")
        def _on_track(track) -> None:
            if track.kind in ("audio", "video"):
                self._tasks.append(asyncio.ensure_future(self._consume(track)))

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = pc.connectionState
            if state in ("failed", "closed"):
                await self.close(f"connection {state}")
            elif state == "disconnected":      # may recover; end the session if it does not within 5 s
                loop = asyncio.get_running_loop()
                self._disconnect_timer = loop.call_later(
                    5.0, lambda: pc.connectionState == "disconnected"
                    and asyncio.ensure_future(self.close("peer disconnected")))
            elif self._disconnect_timer is not None:
                self._disconnect_timer.cancel()
                self._disconnect_timer = None

    # -- page <-> server messages ----------------------------------------------------------------------
    def _on_open(self) -> None:
        if not self.authenticated:  # wait for the page's token; close if it does not come
            asyncio.get_running_loop().call_later(
                self._auth_timeout_s, lambda: not self.authenticated and not self.closed
                and asyncio.ensure_future(self.close("no token on the data channel")))
            return
        self._unsent.appendleft({"type": "hello", "session": self.id, "notice": NOTICE})
        while self._unsent:
            self._send(self._unsent.popleft())

    def _on_message(self, message) -> None:
        if not isinstance(message, str) or len(message) > 4096:
            return
        try:
            msg = json.loads(message)
        except (TypeError, ValueError, RecursionError):
            return
        if not isinstance(msg, dict):
            return
        if not self.authenticated:
            if msg.get("type") == "auth" and token_ok(msg.get("token"), self._token):
                self.authenticated = True
                self._on_open()
            else:
                asyncio.ensure_future(self.close("wrong or missing token on the data channel"))
            return
        if msg.get("type") == "stop":
            asyncio.ensure_future(self.close("stopped by the page", flush=True))
        elif msg.get("type") == "guided" and msg.get("action") == "start":
            self._pending.append(("guided",))  # started on the engine thread, in order with the media
            self._wake.set()

    def _send(self, msg: dict) -> None:
        ch = self.channel
        if ch is None or ch.readyState != "open" or not self.authenticated:
            self._unsent.append(msg)
            return
        try:
            ch.send(json.dumps(msg))
        except Exception as exc:  # noqa: BLE001 - a closing channel must not stop the session's worker
            log.debug("session %s: send failed: %s", self.id, exc)

    # -- media -----------------------------------------------------------------------------------------
    async def _consume(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        kind = track.kind
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            t = self.clock.time(kind, frame.pts, frame.time_base)
            self._last_media = time.monotonic()
            self.counts[kind] += 1
            if kind == "audio":
                self._pending.append(("audio", frame, frame.sample_rate, t, None))   # converted on the engine thread
            else:
                if self._first_rtp is None:
                    self._first_rtp = frame.pts
                now = time.monotonic()
                self._arrivals.append(now)
                while self._arrivals and self._arrivals[0] < now - FPS_SPAN_S:
                    self._arrivals.popleft()
                self._pending.append(("video", frame, t, frame.pts))
            self._wake.set()
        if not self.closed:
            await self.close(f"{kind} track ended")

    async def _watch_media(self) -> None:
        """Close a connected session whose peer has sent no sound or picture for ``media_timeout_s``.
        Before the connection comes, the app's connect timeout applies; a page always sends while
        connected (a muted track still sends silence or black frames)."""
        while not self.closed:
            await asyncio.sleep(min(1.0, self._media_timeout_s / 4))
            if self.pc.connectionState != "connected":
                self._last_media = time.monotonic()
            elif time.monotonic() - self._last_media > self._media_timeout_s:
                await self.close(f"no media for {self._media_timeout_s:g} s")

    def _process(self, batch: list, final: bool = False) -> tuple[list[tuple[dict, int | None]], list[dict]]:
        """Engine thread: push a batch of frames; return the due events, each with the RTP timestamp of the
        video frame that completed its window (the page maps it back to the frame's capture time), or None
        when the window closed without its last video frame (video late or stalled); and the other messages
        for the page (the guided session's, the landmark overlay)."""
        out, messages = [], []
        for item in batch:
            if item[0] == "guided":
                messages += self._start_guided()
                continue
            if item[0] == "audio":
                _, frame, rate, t, _ = item
                samples = audio_to_mono_float(frame)
                events = self.engine.push_audio(samples, rate, t)
                self._media_t = max(self._media_t, t + len(samples) / rate)
            else:
                _, frame, t, rtp = item
                self.lag_s = self.clock.now() - t
                if self.lag_s > self.max_lag_s:
                    self.counts["dropped_video"] += 1
                    continue
                self._last_rtp, self._last_video_t = rtp, t
                events = self.engine.push_video(frame, t)
                self._media_t = max(self._media_t, t)
            out.extend((ev, self._completing_rtp(ev)) for ev in events)
        if final:
            out.extend((ev, self._completing_rtp(ev)) for ev in self.engine.flush())
        if self.guided is not None and self.guided.result is None:
            messages += self.guided.advance(self._media_t, final=final)
            if self.guided.result is not None:
                self.engine.listeners.remove(self.guided.on_window)
                self.event_log.write(self.id, "guided_result", result=self.guided.result.to_json())
        if self.engine.landmark_detectors and self._media_t - self._overlay_t >= OVERLAY_EVERY_S:
            self._overlay_t = self._media_t
            rings = self.engine.streams.by_kind
            messages.append({"type": "landmarks", "t": round(self._media_t, 3),
                             **{kind: overlay_points(rings[kind].last, OVERLAID[kind])
                                for kind in self.engine.landmark_detectors if kind in OVERLAID}})
        return out, messages

    def _start_guided(self) -> list[dict]:
        """Engine thread: the page asked for a guided session; it begins half a second of media from now."""
        if self.guided is not None and self.guided.result is None:
            return []  # one at a time
        engine = self.engine
        try:
            self.guided = GuidedSession(engine.detector, self._media_t + 0.5, update_every=engine.update_every,
                                        settle_s=engine.max_wait_s, abstain_band=engine.abstain_band)
        except UsageError as exc:
            return [{"type": "guide_error", "message": str(exc)}]
        engine.listeners.append(self.guided.on_window)
        self.event_log.write(self.id, "guided_start", steps=[s.task.name for s in self.guided.steps])
        return [self.guided.plan_message()]

    def _completing_rtp(self, event: dict) -> int | None:
        if self._last_video_t is None or self._last_video_t < event.get("t", 0.0) - VIDEO_SLACK_S:
            return None
        return self._last_rtp

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, self._pending = list(self._pending), deque()
            try:
                results, messages = await loop.run_in_executor(self._executor, self._process, batch)
            except Exception as exc:  # noqa: BLE001 - report engine errors to the page, end the session
                log.exception("session %s: engine error", self.id)
                self._send({"type": "error", "message": f"engine error: {exc}"})
                await self.close("engine error")
                return
            for event, rtp in results:
                self._emit(event, rtp)
            for msg in messages:
                self._send(msg)

    def _emit(self, event: dict, rtp: int | None) -> None:
        self.counts["events"] += 1
        self._send({"type": "prediction", "event": event, "video_rtp": rtp, "video_first_rtp": self._first_rtp,
                    "dropped_video": self.counts["dropped_video"], "lag_s": round(self.lag_s, 3),
                    "video_fps": round(len(self._arrivals) / FPS_SPAN_S, 1)})
        self.event_log.write(self.id, "prediction", event=event)

    # -- end -------------------------------------------------------------------------------------------
    async def close(self, reason: str, flush: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        loop = asyncio.get_running_loop()
        if flush:
            try:
                rest = list(self._pending)
                self._pending.clear()
                results, messages = await loop.run_in_executor(self._executor, self._process, rest, True)
                for event, rtp in results:
                    self._emit(event, rtp)
                for msg in messages:  # a guided session stopped early gives its result from what it has
                    self._send(msg)
            except Exception:  # noqa: BLE001
                log.exception("session %s: flush failed", self.id)
        self._send({"type": "end", "reason": reason})
        if self.channel is not None and self.channel.readyState == "open":
            await asyncio.sleep(0.2)           # let the last messages leave before the connection closes
        try:
            self.event_log.write(self.id, "end", reason=reason, counts=dict(self.counts))
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self.pc.close()
            log.info("session %s ended: %s (%s)", self.id, reason, self.counts)
        finally:  # the session's slot is freed even if closing the connection failed
            if self.on_closed is not None:
                self.on_closed(self)
