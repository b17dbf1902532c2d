"""Several server processes behind one address (``symptomfuse serve --workers N``).

One Python process receives WebRTC on one event loop: aiortc parses, decrypts and reorders every RTP
packet there, and that loop is what saturates first (about 0.25 of a core per session with the demo
model, most of it on that loop). With ``--workers N`` the command starts N worker processes, each a
complete ``symptomfuse serve`` on a loopback port of its own (the next N ports), and this front process
serves the page and hands each offer to the worker with the fewest sessions. Media then flows between the
browser and that worker directly; the front never touches it. Each worker loads the model itself.

Every offer reaches a worker from the front's loopback address, so the workers cannot tell browsers apart
by address. The front holds the per-client limit itself: it asks every worker how many sessions the
browser holds there, one offer of that browser at a time, and names the browser to the worker it relays
to, with a key that it gave the workers in their environment (``guard.client_of``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

from symptomfuse.serve.app import STATIC, _index
from symptomfuse.serve.guard import (CLIENT_HEADER, FRONT_KEY_ENV, FRONT_KEY_HEADER, GUARD, TOKEN_ENV, Guard,
                                     check_held, read_offer)
from symptomfuse.serve.session import NOTICE

# loopback requests never go through a proxy named in the environment (http_proxy and the like)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

WORKERS = web.AppKey("workers", list)
OFFERING = web.AppKey("offering", dict)  # client -> [lock, offers waiting or in hand]: one offer at a time


def start_workers(n: int, base_port: int, args: list[str], log_level: str = "info", front_key: str | None = None,
                  token: str | None = None) -> list[tuple[str, subprocess.Popen]]:
    """Start ``n`` ``symptomfuse serve`` processes on 127.0.0.1:base_port+i with the given arguments;
    ``front_key`` lets them believe the client this front names, and ``token`` is the server's. Both go in
    their environment, not on their command lines, which every user of the machine can read."""
    given = {FRONT_KEY_ENV: front_key, TOKEN_ENV: token}
    env = {**{k: v for k, v in os.environ.items() if k not in given}, **{k: v for k, v in given.items() if v}}
    out = []
    for i in range(n):
        port = base_port + i
        cmd = [sys.executable, "-m", "symptomfuse.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", log_level]
        out.append((f"http://127.0.0.1:{port}/", subprocess.Popen(cmd, env=env)))
    return out


def wait_ready(workers: list[tuple[str, subprocess.Popen]], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for url, proc in workers:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {url} exited with {proc.returncode} before it was ready; see its log above")
            try:
                with NO_PROXY.open(url + "health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {url} was not ready after {timeout:.0f} s")
                time.sleep(0.2)


def stop_workers(workers: list[tuple[str, subprocess.Popen]], timeout: float = 15.0) -> None:
    for _, proc in workers:
        if proc.poll() is None:
            proc.terminate()                   # each worker ends its sessions cleanly on SIGTERM
    deadline = time.monotonic() + timeout
    for _, proc in workers:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _naming(request: web.Request) -> dict:
    """Headers that name the browser behind ``request`` to a worker, with the key that makes it believe it."""
    return {CLIENT_HEADER: request.remote or "", FRONT_KEY_HEADER: request.app[GUARD].front_key}


async def _load(client: ClientSession, url: str, naming: dict) -> tuple[int, dict]:
    """A worker's open sessions and its health answer (its ``client_sessions``: the named browser's)."""
    try:
        async with client.get(url + "health", headers=naming) as r:
            body = await r.json()
            return int(body["sessions"]), body
    except Exception:  # noqa: BLE001 - a worker that does not answer gets no new session
        return 1 << 30, {}


async def _loads(request: web.Request, client: ClientSession) -> list[tuple[int, dict]]:
    urls = [u for u, _ in request.app[WORKERS]]
    return await asyncio.gather(*(_load(client, u, _naming(request)) for u in urls))


async def _health(request: web.Request) -> web.Response:
    async with ClientSession(timeout=ClientTimeout(total=5)) as client:
        loads = await _loads(request, client)
    up = [(n, body) for n, body in loads if body]
    return web.json_response({**(up[0][1] if up else {}), "sessions": sum(n for n, _ in up),
                              "client_sessions": sum(body.get("client_sessions", 0) for _, body in up),
                              "workers": len(loads), "workers_up": len(up), "notice": NOTICE})


@contextlib.asynccontextmanager
async def _one_offer_at_a_time(app: web.Application, client: str | None):
    """Handle one client's offers in turn, so that each is counted with the sessions of those before it."""
    entry = app[OFFERING].setdefault(client, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            yield
    finally:
        entry[1] -= 1
        if not entry[1]:
            del app[OFFERING][client]


async def _offer(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    await read_offer(request, guard)  # the same checks as a worker's, before any relaying
    body = await request.read()
    async with _one_offer_at_a_time(request.app, request.remote), \
            ClientSession(timeout=ClientTimeout(total=30)) as client:
        loads = await _loads(request, client)
        check_held(sum(b.get("client_sessions", 0) for _, b in loads), guard)  # over all the workers
        best = min(range(len(loads)), key=lambda i: loads[i][0])
        if not loads[best][1]:
            raise web.HTTPServiceUnavailable(text="no worker is answering; see the server log")
        url = request.app[WORKERS][best][0]
        async with client.post(url + "offer", data=body, headers={
                "Content-Type": request.content_type or "application/json", **_naming(request)}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)


def create_front_app(workers: list[tuple[str, subprocess.Popen]], guard: Guard) -> web.Application:
    """The front's application; ``guard.front_key`` must be the key the workers were started with."""
    if not guard.front_key:
        raise ValueError("the front needs the key its workers were started with (Guard.front_key)")
    app = web.Application(client_max_size=256 * 1024)
    app[WORKERS] = workers
    app[GUARD] = guard
    app[OFFERING] = {}
    app.router.add_get("/", _index)
    app.router.add_get("/health", _health)
    app.router.add_post("/offer", _offer)
    app.router.add_static("/static/", Path(STATIC), show_index=False)
    return app
