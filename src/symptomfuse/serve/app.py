"""The web application: the page, its static files, and the WebRTC offer/answer endpoint.

Routes: ``GET /`` (the page), ``GET /static/...``, ``POST /offer`` (``{"sdp", "type"}`` -> the answer and a
session id), ``GET /health`` (sessions open). ICE uses no STUN or TURN server: nothing leaves the machine
or the local network, and aiortc never contacts a public server.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import ssl
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from symptomfuse.errors import UsageError
from symptomfuse.serve.guard import GUARD, Guard, check_exposure, check_page, client_of, read_offer
from symptomfuse.serve.session import NOTICE, EventLog, Session

log = logging.getLogger("symptomfuse.serve")

STATIC = Path(__file__).with_name("static")
SESSIONS = web.AppKey("sessions", dict)
CONFIG = web.AppKey("config", dict)


def create_app(engine_factory: Callable[[], Any], *, event_log: Path | None = None, max_sessions: int = 16,
               max_lag_s: float = 1.0, info: dict | None = None, guard: Guard = Guard()) -> web.Application:
    """An aiohttp application; ``engine_factory()`` returns a fresh engine for each browser session;
    ``guard`` says what offers are accepted (``serve.guard``)."""
    app = web.Application(client_max_size=256 * 1024)
    app[SESSIONS] = {}
    app[GUARD] = guard
    app[CONFIG] = {"factory": engine_factory, "log": EventLog(event_log), "max": max_sessions,
                   "max_lag": max_lag_s,
                   "info": {"notice": NOTICE, **getattr(engine_factory, "info", {}), **(info or {})}}
    app.router.add_get("/", _index)
    app.router.add_get("/health", _health)
    app.router.add_post("/offer", _offer)
    app.router.add_static("/static/", STATIC, show_index=False)
    app.on_startup.append(_quiet_peer_resets)
    app.on_shutdown.append(_shutdown)
    return app


async def _quiet_peer_resets(app: web.Application) -> None:
    """A browser that vanishes (a closed lid, a lost network) leaves aiortc's transport tasks failing with
    a connection error nobody awaits; asyncio would log each with a full traceback. Log one line instead;
    anything else still goes to the loop's usual handler."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop, context) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, OSError)) and "Task exception was never retrieved" in context.get(
                "message", ""):
            log.info("a peer went away mid-send: %s: %s", type(exc).__name__, exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def _index(request: web.Request) -> web.StreamResponse:
    check_page(request, request.app[GUARD])
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def _held(app: web.Application, client: str | None) -> int:
    return sum(s.remote == client for s in app[SESSIONS].values())


async def _health(request: web.Request) -> web.Response:
    """Sessions open, those of the asking client (``client_sessions``: a front process asks for the browser
    it relays), and what the page shows."""
    app = request.app
    return web.json_response({"sessions": len(app[SESSIONS]),
                              "client_sessions": _held(app, client_of(request, app[GUARD])), **app[CONFIG]["info"]})


async def _offer(request: web.Request) -> web.Response:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    app = request.app
    cfg = app[CONFIG]
    client = client_of(request, app[GUARD])
    # 4xx before any session exists; the client's sessions are counted once the body is in, and no await
    # comes between that count and this session's registration below
    params = await read_offer(request, app[GUARD], lambda: _held(app, client))
    sdp, kind = params["sdp"], params["type"]
    if len(app[SESSIONS]) >= cfg["max"]:
        raise web.HTTPServiceUnavailable(text=f"{cfg['max']} sessions are open (--max-sessions); try again later")

    # iceServers=[]: no STUN/TURN, so aiortc never contacts a public server (its default is Google's STUN)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        session = Session(pc, cfg["factory"], cfg["log"], cfg["max_lag"],
                          on_closed=lambda s: app[SESSIONS].pop(s.id, None), token=app[GUARD].token,
                          auth_timeout_s=app[GUARD].connect_timeout_s, media_timeout_s=app[GUARD].media_timeout_s)
    except Exception:
        await pc.close()
        raise
    session.remote = client
    app[SESSIONS][session.id] = session
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - a bad offer ends that session only
        await session.close(f"bad offer: {type(exc).__name__}")
        raise web.HTTPBadRequest(text=f"could not answer the offer: {str(exc)[:200]}")

    def expire() -> None:  # an answered offer that never connects must not hold a session
        if not session.closed and pc.connectionState != "connected":
            asyncio.ensure_future(session.close(f"not connected within {app[GUARD].connect_timeout_s:g} s"))

    asyncio.get_running_loop().call_later(app[GUARD].connect_timeout_s, expire)
    log.info("session %s started (%d open)", session.id, len(app[SESSIONS]))
    return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                              "session": session.id, **cfg["info"]})


async def _shutdown(app: web.Application) -> None:
    sessions = list(app[SESSIONS].values())
    await asyncio.gather(*(s.close("server shutting down") for s in sessions), return_exceptions=True)
    app[CONFIG]["log"].close()


def detector_engine_factory(model_dir: Path, backend: str = "torch", update_every: float = 0.5,
                            threads: int | None = None, landmarks: bool = True):
    """Load the exported detector once (shared: it is stateless); each session gets its own StreamEngine.
    ``threads`` bounds onnxruntime's threads per inference (torch's are process-wide). ``landmarks``: run
    MediaPipe on each frame for the modalities that need hand or face landmarks (the page then sends
    frames large enough for it)."""
    from symptomfuse.stream.detector import Detector
    from symptomfuse.stream.engine import StreamEngine, landmarks_needed, mediapipe_detectors
    from symptomfuse.tasks import plan

    detector = Detector.load(model_dir, backend=backend, threads=threads if backend == "onnx" else None)
    kinds = landmarks_needed(detector) if landmarks else set()

    def factory() -> StreamEngine:
        return StreamEngine(detector, update_every=update_every, **mediapipe_detectors(kinds))

    frames = detector.contract.frame_config()
    steps = plan({m: detector.contract.modality(m) for m in detector.modalities})
    factory.info = {"modalities": list(detector.modalities), "classes": list(detector.classes),
                    "positive_class": detector.positive_class, "live": detector.spec.live_info(),
                    "frame_size": [frames.width, frames.height] if frames else [64, 48],
                    "fps": detector.contract.timing.fps, "landmarks": sorted(kinds),
                    "tasks": [s.to_json() for s in steps]}
    return factory


def serve(engine_factory, host: str = "127.0.0.1", port: int = 8080, *, ice_addresses: list[str] | None = None,
          event_log: Path | None = None, max_sessions: int = 16, info: dict | None = None,
          cert: Path | None = None, key: Path | None = None, ready: Callable[[str], None] | None = None,
          guard: Guard = Guard()) -> None:
    """Run the server until SIGINT or SIGTERM; https when ``cert`` and ``key`` are given."""
    from symptomfuse.serve.ice import limit_host_addresses

    check_exposure(host, guard, cert)
    limit_host_addresses(ice_addresses)
    run_app(create_app(engine_factory, event_log=event_log, max_sessions=max_sessions, info=info, guard=guard),
            host, port, cert=cert, key=key, ready=ready)


_LISTEN_ERRORS = {
    errno.EADDRINUSE: "the port is in use (another server, or this one still running?): choose another --port, or "
                      "stop what listens there",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's: give one of its addresses as --host (127.0.0.1 "
                         "for this machine alone, 0.0.0.0 for all)",
    errno.EACCES: "ports below 1024 need privileges: choose --port 1024 or above",
}


def run_app(app: web.Application, host: str, port: int, *, cert: Path | None = None, key: Path | None = None,
            ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut it down cleanly (its on_shutdown hooks run)."""

    async def main() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        tls = None
        if cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(str(cert), str(key))
            except (ssl.SSLError, OSError) as exc:
                raise UsageError(f"--cert {cert} and --key {key} do not load as a PEM certificate and its private "
                                 f"key ({exc.strerror or exc}): give the pair your certificate authority (or "
                                 "openssl req -x509) made") from None
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {host} port {port}: {_LISTEN_ERRORS.get(exc.errno, exc.strerror or exc)}") from None
        url = f"{'https' if tls else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}/"
        (ready or print)(url)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):   # end sessions cleanly on Ctrl-C and on kill
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
