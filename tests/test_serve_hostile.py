"""The live server against hostile clients, on loopback: 1,200 fuzzed or hostile offers and 100 abrupt
disconnects, every answer a 4xx and no session created; then a real WebRTC client (aiortc, playing a
synthetic recording) still connects and gets predictions, and nothing is left behind. Also: answered
offers that never connect are closed, per-client limits hold, and binding beyond loopback needs a token
and TLS."""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest
from aiohttp import ClientSession, TCPConnector
from aiohttp.test_utils import TestServer

from symptomfuse.errors import UsageError
from symptomfuse.serve.app import create_app
from symptomfuse.serve.guard import Guard, check_exposure

TOKEN = "s3cret-token-0123456789"


def _valid_sdp() -> str:
    from aiortc import RTCPeerConnection

    async def make():
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp
    return asyncio.run(make())


def hostile_requests(n: int, sdp: str, seed: int = 0):
    """(headers, body bytes) pairs, each something the server must refuse with a 4xx."""
    rng = random.Random(seed)
    good_body = {"sdp": sdp, "type": "offer", "token": TOKEN}
    json_ct = {"Content-Type": "application/json"}

    def junk_sdp():
        return rng.choice(["hello", "", "v=0", "v=0\r\n", "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel",
                           "x" * rng.randint(1, 500), "v=1\r\nm=audio 9 RTP 0", "v=0\r\nnot a line\r\nm=audio 9 R 0",
                           "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(1, 200))),
                           sdp.replace("m=audio", "m=text").replace("m=video", "m=text")])

    makers = [
        lambda: (json_ct, json.dumps({**good_body, "sdp": junk_sdp()})),
        lambda: (json_ct, json.dumps({**good_body, "sdp": rng.choice([1, None, [], {}, 3.5, True])})),
        lambda: (json_ct, json.dumps({**good_body, "type": rng.choice(["answer", "pranswer", "", 1, None])})),
        lambda: (json_ct, json.dumps(rng.choice([[], "offer", 1, None, [good_body]]))),
        lambda: (json_ct, "[" * rng.randint(2000, 50000) + "]" * 10),  # nesting
        lambda: (json_ct, json.dumps({**good_body, "sdp": {"a": [[[[[]]]]]}})),
        lambda: (json_ct, json.dumps({**good_body, "sdp": sdp + "a=x\r\n" * 30000})),  # a huge field
        lambda: (json_ct, "x" * 300_000),  # over the body limit
        lambda: (json_ct, json.dumps({**good_body, "extra": "field"})),
        lambda: ({"Content-Type": rng.choice(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                               ""])}, json.dumps(good_body)),  # no preflight for these
        lambda: ({**json_ct, "Origin": rng.choice(["https://evil.example", "null", "http://127.0.0.1.evil.example",
                                                    "http://localhost:1"])}, json.dumps(good_body)),
        lambda: (json_ct, json.dumps({k: v for k, v in good_body.items() if k != "token"})),  # no token
        lambda: (json_ct, json.dumps({**good_body, "token": rng.choice(["", "x", TOKEN[:-1], TOKEN + "x", 12])})),
        lambda: (json_ct, b"\xff\xfe\x00bad utf-8"),
        lambda: (json_ct, "{" + '"sdp": "v=0",' * rng.randint(1, 50)),  # truncated
    ]
    for _ in range(n):
        headers, body = rng.choice(makers)()
        yield headers, body.encode() if isinstance(body, str) else body


async def _abrupt_disconnects(port: int, n: int) -> None:
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        part = [b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"sdp\"",
                b"POST /offer HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost", b""][i % 4]
        writer.write(part)
        await writer.drain()
        writer.transport.abort()  # gone without a word


async def _real_client(url: str, recording, channel_token: str | None = TOKEN, wait_s: float = 15.0) -> dict:
    """An aiortc peer playing a recording: connects, sends ``channel_token`` on the data channel (None:
    nothing), and receives predictions over it."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    pc = RTCPeerConnection()
    channel = pc.createDataChannel("events")
    got: list[dict] = []
    channel.on("message", lambda m: got.append(json.loads(m)))
    if channel_token is not None:
        channel.on("open", lambda: channel.send(json.dumps({"type": "auth", "token": channel_token})))
    player = MediaPlayer(str(recording))
    for track in (player.audio, player.video):
        if track is not None:
            pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    async with ClientSession() as http:
        async with http.post(url + "offer", json={"sdp": pc.localDescription.sdp, "type": "offer",
                                                  "token": TOKEN}) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    for _ in range(int(wait_s * 10)):
        if any(m.get("type") == "prediction" for m in got):
            break
        await asyncio.sleep(0.1)
    state = pc.connectionState
    await pc.close()
    if player.audio is not None:
        player.audio.stop()
    return {"state": state, "messages": got}


def test_hostile_offers_and_disconnects_leave_the_server_serving(cohort):
    sdp = _valid_sdp()
    recording = next(iter(sorted((cohort / "recordings").glob("*.mp4"))))

    async def run():
        app = create_app(_StubEngine, guard=Guard(token=TOKEN, connect_timeout_s=2.0))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("/"))
        statuses = []
        try:
            async with ClientSession() as http:
                for headers, body in hostile_requests(1200, sdp):
                    async with http.post(url + "offer", data=body, headers=headers) as r:
                        statuses.append(r.status)
                        await r.read()
                    assert not app[_sessions_key()], "a hostile offer created a session"
                page = await http.get(url)
                assert page.status == 403  # the page needs the token too
                assert (await http.get(url + f"?token={TOKEN}")).status == 200
            await _abrupt_disconnects(server.port, 100)
            assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
            assert len(set(statuses)) >= 4  # 400, 403, 413, 415 at least
            # the token is checked on the data channel too: without it nothing is sent and the session ends
            sessions_before = len(app[_sessions_key()])
            silent = await _real_client(url, recording, channel_token=None, wait_s=4.0)
            assert silent["messages"] == [] and len(app[_sessions_key()]) == sessions_before
            wrong = await _real_client(url, recording, channel_token=TOKEN + "x", wait_s=3.0)
            assert wrong["messages"] == []
            result = await _real_client(url, recording)
            assert result["state"] == "connected"
            assert any(m.get("type") == "hello" for m in result["messages"])
            assert any(m.get("type") == "prediction" for m in result["messages"])
            for _ in range(50):
                if not app[_sessions_key()]:
                    break
                await asyncio.sleep(0.1)
            assert not app[_sessions_key()], "a session outlived its client"
        finally:
            await server.close()
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, leftover

    threads_before = {t.name for t in threading.enumerate()}
    asyncio.run(run())
    left = [t.name for t in threading.enumerate() if t.name not in threads_before]
    assert not left, f"threads left behind: {left}"  # sessions' engine threads included


async def _offers_at_once(url: str, sdp: str, n: int, source: str = "127.0.0.1", headers: dict | None = None
                          ) -> list[int]:
    """The statuses of ``n`` offers sent at the same time from the loopback address ``source``: every
    request's headers first, then, a moment later, every body (so that all are in hand before any body has
    been read)."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    body = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"POST /offer HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{head}"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()

    async def one(go: asyncio.Event) -> int:
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        writer.write(request)
        await writer.drain()
        await go.wait()
        writer.write(body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        writer.close()
        return status

    go = asyncio.Event()
    tasks = [asyncio.ensure_future(one(go)) for _ in range(n)]
    await asyncio.sleep(0.5)
    go.set()
    return sorted(await asyncio.gather(*tasks))


def test_an_answered_offer_that_never_connects_is_closed_and_clients_are_limited():
    """Each client holds at most per_client sessions, offers sent at once included; answered offers that
    never connect are closed."""
    sdp = _valid_sdp()

    async def run():
        app = create_app(lambda: _StubEngine(), guard=Guard(per_client=3, connect_timeout_s=1.0))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("/"))
        try:
            # offers sent at once are counted with the sessions those before them opened
            assert await _offers_at_once(url, sdp, 6) == [200] * 3 + [429] * 3
            await asyncio.sleep(2.5)  # never connected: closed after 1 s
            assert not app[_sessions_key()]
            async with ClientSession() as http:
                codes = []
                for _ in range(5):
                    async with http.post(url + "offer", json={"sdp": sdp, "type": "offer"}) as r:
                        codes.append(r.status)
                assert codes == [200, 200, 200, 429, 429]
                assert len(app[_sessions_key()]) == 3
                await asyncio.sleep(2.5)  # never connected: closed after 1 s
                assert not app[_sessions_key()]
                async with http.post(url + "offer", json={"sdp": sdp, "type": "offer"}) as r:
                    assert r.status == 200
        finally:
            await server.close()
    asyncio.run(run())


def test_behind_the_front_of_serve_workers_each_browser_is_limited_on_its_own():
    """`serve --workers`: every offer reaches a worker from the front's address. Each browser still gets
    its own per_client sessions over all the workers together, offers sent at once included; a worker
    believes a named browser only from its front (the key), not from anyone who reaches its port."""
    from symptomfuse.serve.guard import CLIENT_HEADER, FRONT_KEY_HEADER
    from symptomfuse.serve.workers import create_front_app

    sdp = _valid_sdp()
    key = "front-key-0123456789abcdef"

    async def run():
        guard = Guard(per_client=3, connect_timeout_s=30.0, front_key=key)
        apps = [create_app(lambda: _StubEngine(), guard=guard) for _ in range(2)]
        servers = [TestServer(a, host="127.0.0.1") for a in apps]
        for s in servers:
            await s.start_server()
        front = TestServer(create_front_app([(str(s.make_url("/")), None) for s in servers], guard), host="127.0.0.1")
        await front.start_server()
        url = str(front.make_url("/"))
        try:
            # one session on each worker (the front picks the one with fewer), then three offers at once: the
            # front counts the two, lets one through and refuses two (each worker alone would take two more)
            assert await _offers_at_once(url, sdp, 1) == [200] and await _offers_at_once(url, sdp, 1) == [200]
            assert [len(a[_sessions_key()]) for a in apps] == [1, 1]
            assert await _offers_at_once(url, sdp, 3) == [200, 429, 429]
            assert await _offers_at_once(url, sdp, 4, "127.0.0.2") == [200] * 3 + [429]  # another browser
            remotes = sorted(s.remote for a in apps for s in a[_sessions_key()].values())
            assert remotes == ["127.0.0.1"] * 3 + ["127.0.0.2"] * 3
            async with ClientSession(connector=TCPConnector(local_addr=("127.0.0.2", 0))) as http:
                async with http.get(url + "health") as r:
                    health = await r.json()
            assert health["sessions"] == 6 and health["client_sessions"] == 3 and health["workers_up"] == 2
            # straight to a worker, naming another browser: without the key the name counts for nothing
            worker = str(servers[0].make_url("/"))
            for source, spoof in (("127.0.0.3", {CLIENT_HEADER: "10.9.9.9", FRONT_KEY_HEADER: "not-the-key"}),
                                  ("127.0.0.4", {CLIENT_HEADER: "10.9.9.9"})):
                assert await _offers_at_once(worker, sdp, 4, source, spoof) == [200] * 3 + [429]
            remotes = [s.remote for s in apps[0][_sessions_key()].values()]
            assert remotes.count("127.0.0.3") == remotes.count("127.0.0.4") == 3 and "10.9.9.9" not in remotes
        finally:
            await front.close()
            for s in servers:
                await s.close()
    asyncio.run(run())


def test_binding_beyond_loopback_needs_a_token_and_tls(tmp_path):
    check_exposure("127.0.0.1", Guard(), None)
    check_exposure("::1", Guard(), None)
    for guard, cert in ((Guard(), None), (Guard(token=TOKEN), None), (Guard(), tmp_path / "c.pem")):
        with pytest.raises(UsageError, match="--token"):
            check_exposure("0.0.0.0", guard, cert)
    check_exposure("0.0.0.0", Guard(token=TOKEN), tmp_path / "c.pem")


def _sessions_key():
    from symptomfuse.serve.app import SESSIONS
    return SESSIONS


class _StubEngine:
    """The session's engine interface, answering every window with a fixed event (the model does not
    matter here; the path through the server does)."""

    def __init__(self):
        self.t = 0.0
        self.modalities = {}
        self.landmark_detectors = {}

    def push_audio(self, samples, rate, t):
        self.t = max(self.t, t + len(samples) / rate)
        if self.t > 3.0 and int(self.t * 2) != int((self.t - len(samples) / rate) * 2):
            return [{"t": self.t, "window": [self.t - 3, self.t], "modalities": {}, "notice": "research tool",
                     "fused": {"p": 0.5, "p_window": 0.5, "label": None, "abstain": True, "modalities": []},
                     "latency_ms": 1.0, "schema": "symptomfuse-event/1"}]
        return []

    def push_video(self, frame, t):
        return []

    def flush(self):
        return []


_VANISHING_CLIENT = r'''
import asyncio, sys
from aiohttp import ClientSession
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
async def main(url, recording):
    pc = RTCPeerConnection()
    pc.createDataChannel("events")
    if sys.argv[3] == "silent":  # offers audio and video, then never sends a sound or a picture
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
    else:
        player = MediaPlayer(recording)
        for track in (player.audio, player.video):
            if track is not None:
                pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    async with ClientSession() as http:
        async with http.post(url + "offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            answer = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    print("connected", flush=True)
    await asyncio.sleep(60)  # killed long before
asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


def test_peers_that_vanish_or_send_nothing_are_closed_and_logged_in_one_line_each(cohort, caplog):
    """A browser killed mid-session (SIGKILL: no goodbye) leaves aiortc's send tasks failing; the server
    logs that in one line, never a traceback, and ends the session once no media has come for the media
    timeout (aiortc alone gives up only after about 30 s of failed consent checks). A peer that connects
    and stays, answering consent checks, but sends no sound or picture is closed the same way."""
    import logging
    import signal
    import subprocess
    import sys

    recording = str(next(iter(sorted((cohort / "recordings").glob("*.mp4")))))
    caplog.set_level(logging.INFO)

    async def run():
        app = create_app(_StubEngine, guard=Guard(connect_timeout_s=5.0, media_timeout_s=2.0))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("/"))
        silent = None
        try:
            for _ in range(2):
                client = await asyncio.create_subprocess_exec(sys.executable, "-c", _VANISHING_CLIENT, url, recording,
                                                              "media", stdout=subprocess.PIPE)
                assert (await asyncio.wait_for(client.stdout.readline(), 60)).strip() == b"connected"
                await asyncio.sleep(2.0)  # media flowing, a prediction on its way
                client.send_signal(signal.SIGKILL)
                await client.wait()
            silent = await asyncio.create_subprocess_exec(sys.executable, "-c", _VANISHING_CLIENT, url, recording,
                                                          "silent", stdout=subprocess.PIPE)
            assert (await asyncio.wait_for(silent.stdout.readline(), 60)).strip() == b"connected"
            t0 = asyncio.get_running_loop().time()
            for _ in range(600):
                if not app[_sessions_key()]:
                    break
                await asyncio.sleep(0.1)
            assert not app[_sessions_key()], "a vanished or silent peer's session was never closed"
            assert asyncio.get_running_loop().time() - t0 < 20  # the media timeout, not aiortc's 30-s consent
            assert silent.returncode is None  # the silent peer is still there: closed by the server
            await asyncio.sleep(1.0)
        finally:
            if silent is not None and silent.returncode is None:
                silent.kill()
                await silent.wait()
            await server.close()

    asyncio.run(run())
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert all("\n" not in r.getMessage() for r in caplog.records)
    ended = [r.getMessage() for r in caplog.records if r.name == "symptomfuse.serve" and "ended" in r.getMessage()]
    assert len(ended) == 3 and sum("no media for 2 s" in m for m in ended) == 3, ended
