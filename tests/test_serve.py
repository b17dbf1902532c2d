"""The serve package without a browser: frame conversion, the media clock, ICE addresses, the web routes.
The whole path through a real browser is tests/test_serve_browser.py."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from symptomfuse import NOTICE
from symptomfuse.serve.app import create_app
from symptomfuse.serve.ice import limit_host_addresses, parse_addresses
from symptomfuse.serve.media import RTP_WRAP, MediaClock, audio_to_mono_float


def test_audio_frames_become_float_mono():
    left = np.full(480, 16384, np.int16)
    right = np.full(480, -8192, np.int16)
    packed = np.stack([left, right], axis=1).reshape(1, -1)           # s16 interleaved stereo, as aiortc gives
    frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
    frame.sample_rate = 48000
    x = audio_to_mono_float(frame)
    assert x.dtype == np.float32 and x.shape == (480,)
    assert np.allclose(x, (0.5 - 0.25) / 2)
    planar = av.AudioFrame.from_ndarray(np.stack([left, right]).astype(np.float32) / 32768, format="fltp",
                                        layout="stereo")
    assert np.allclose(audio_to_mono_float(planar), x)


def test_media_clock_aligns_tracks_and_unwraps_rtp():
    now = [100.0]
    clock = MediaClock(now=lambda: now[0])
    now[0] = 100.5                                   # video's first frame arrives 0.5 s into the session
    v0 = RTP_WRAP - 9000                             # 0.1 s before the 32-bit wrap
    assert clock.time("video", v0, Fraction(1, 90000)) == pytest.approx(0.5)
    assert clock.time("video", 9000, Fraction(1, 90000)) == pytest.approx(0.7)    # across the wrap
    assert clock.time("video", 4500, Fraction(1, 90000)) == pytest.approx(0.65)   # reordered, not a wrap
    now[0] = 100.52                                  # audio starts 20 ms later, its own random origin
    assert clock.time("audio", 123456, Fraction(1, 48000)) == pytest.approx(0.52)
    assert clock.time("audio", 123456 + 960, Fraction(1, 48000)) == pytest.approx(0.54)


def test_ice_addresses():
    import aioice.ice

    assert parse_addresses("127.0.0.1, ::1") == ["127.0.0.1", "::1"]
    with pytest.raises(ValueError, match="not an IP address"):
        parse_addresses("localhost")
    original = aioice.ice.get_host_addresses
    try:
        limit_host_addresses(["127.0.0.1"])
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
        limit_host_addresses(None)
        assert aioice.ice.get_host_addresses(True, False)    # discovered, or the loopback fallback
    finally:
        aioice.ice.get_host_addresses = original


def test_routes():
    async def run():
        app = create_app(lambda: None, info={"model": "m"})
        async with TestClient(TestServer(app)) as client:
            page = await client.get("/")
            text = await page.text()
            assert page.status == 200 and "research tool, not a diagnosis" in text.lower()
            for name in ("app.js", "chart.js", "style.css"):
                assert (await client.get(f"/static/{name}")).status == 200
            health = await (await client.get("/health")).json()
            assert health["sessions"] == 0 and health["notice"] == NOTICE
            bad = await client.post("/offer", json={"sdp": 1})
            assert bad.status == 400 and "createOffer" in await bad.text()
            junk = await client.post("/offer", data=b"not json")
            assert junk.status == 415  # not application/json: no CORS preflight guards such a POST
            junk = await client.post("/offer", data=b"not json", headers={"Content-Type": "application/json"})
            assert junk.status == 400
    asyncio.run(run())


def test_serve_command_says_what_to_fix(tmp_path, capsys):
    from symptomfuse.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "symptomfuse export" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--model DIR" in capsys.readouterr().err


def test_a_port_in_use_or_a_bad_certificate_is_a_message(tmp_path):
    """The server cannot listen, or its TLS pair does not load: a message that says what to change, before
    anything is served (it was a traceback from asyncio or ssl)."""
    import socket

    from aiohttp import web

    from symptomfuse.errors import UsageError
    from symptomfuse.serve.app import run_app

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1 port {port}: the port is in use"):
            run_app(web.Application(), "127.0.0.1", port, ready=lambda url: pytest.fail(f"served {url}"))
    finally:
        taken.close()
    (tmp_path / "c.pem").write_text("not a certificate")
    with pytest.raises(UsageError, match="do not load as a PEM certificate and its private key"):
        run_app(web.Application(), "127.0.0.1", 0, cert=tmp_path / "c.pem", key=tmp_path / "c.pem",
                ready=lambda url: pytest.fail(f"served {url}"))


def test_front_hands_offers_to_workers():
    from symptomfuse.serve.guard import Guard
    from symptomfuse.serve.workers import create_front_app

    async def run():
        workers = [TestServer(create_app(lambda: None, info={"model": "m"})) for _ in range(2)]
        for w in workers:
            await w.start_server()
        try:
            front = create_front_app([(str(w.make_url("/")), None) for w in workers], Guard(front_key="k" * 32))
            async with TestClient(TestServer(front)) as client:
                health = await (await client.get("/health")).json()
                assert health["workers"] == health["workers_up"] == 2 and health["sessions"] == 0
                assert health["model"] == "m"
                assert (await client.get("/")).status == 200
                bad = await client.post("/offer", json={"sdp": 1})      # relayed to a worker, which refuses it
                assert bad.status == 400 and "createOffer" in await bad.text()
        finally:
            for w in workers:
                await w.close()
    asyncio.run(run())


def test_overlay_points_are_the_newest_landmarks_found():
    """What the page draws over the preview: a hand's 21 points, every 6th of a face's 478, none when the
    detector found nothing (a NaN row) or has not run."""
    import numpy as np

    from symptomfuse.serve.session import OVERLAID, overlay_points

    hand = np.random.default_rng(0).random((21, 3)).astype(np.float32)
    got = overlay_points((1.0, hand), OVERLAID["hands"])
    assert len(got) == 21 and got[4] == [round(float(hand[4, 0]), 3), round(float(hand[4, 1]), 3)]
    assert len(overlay_points((1.0, np.zeros((478, 3), np.float32)), OVERLAID["face"])) == 80
    assert overlay_points((1.0, np.full((21, 3), np.nan, np.float32)), 1) is None
    assert overlay_points(None, 1) is None
