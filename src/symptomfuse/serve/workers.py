"""Several server processes behind one address (``symptomfuse serve --workers N``).

One Python process receives WebRTC on one event loop: aiortc parses, decrypts and reorders every RTP
packet there, and that loop is what saturates first (about 0.25 of a core per session with the demo
model, most of it on that loop). With ``--workers N`` the command starts N worker processes, each a
complete ``symptomfuse serve`` on a loopback port of its own (the next N ports), and this front process
serves the page and hands each offer to the worker with the fewest sessions. Media then flows between the
browser and that worker directly; the front never touches it. Each worker loads the model itself.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

from symptomfuse.serve.app import STATIC, _index
from symptomfuse.serve.guard import GUARD, Guard, read_offer
from symptomfuse.serve.session import NOTICE

# loopback requests never go through a proxy named in the environment (http_proxy and the like)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

WORKERS = web.AppKey("workers", list)


def start_workers(n: int, base_port: int, args: list[str], log_level: str = "info") -> list[tuple[str, subprocess.Popen]]:
    """Start ``n`` ``symptomfuse serve`` processes on 127.0.0.1:base_port+i with the given arguments."""
    out = []
    for i in range(n):
        port = base_port + i
        cmd = [sys.executable, "-m", "symptomfuse.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", log_level]
        out.append((f"http://127.0.0.1:{port}/", subprocess.Popen(cmd)))
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


async def _load(client: ClientSession, url: str) -> tuple[int, dict]:
    try:
        async with client.get(url + "health") as r:
            body = await r.json()
            return int(body["sessions"]), body
    except Exception:  # noqa: BLE001 - a worker that does not answer gets no new session
        return 1 << 30, {}


async def _health(request: web.Request) -> web.Response:
    urls = [u for u, _ in request.app[WORKERS]]
    async with ClientSession(timeout=ClientTimeout(total=5)) as client:
        loads = await asyncio.gather(*(_load(client, u) for u in urls))
    up = [(n, body) for n, body in loads if body]
    return web.json_response({**(up[0][1] if up else {}), "sessions": sum(n for n, _ in up), "workers": len(urls),
                              "workers_up": len(up), "notice": NOTICE})


async def _offer(request: web.Request) -> web.Response:
    await read_offer(request, request.app[GUARD])  # the same checks as a worker's, before any relaying
    body = await request.read()
    urls = [u for u, _ in request.app[WORKERS]]
    async with ClientSession(timeout=ClientTimeout(total=30)) as client:
        loads = await asyncio.gather(*(_load(client, u) for u in urls))
        best = min(range(len(urls)), key=lambda i: loads[i][0])
        if not loads[best][1]:
            raise web.HTTPServiceUnavailable(text="no worker is answering; see the server log")
        async with client.post(urls[best] + "offer", data=body,
                               headers={"Content-Type": request.content_type or "application/json"}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)


def create_front_app(workers: list[tuple[str, subprocess.Popen]], guard: Guard = Guard()) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[WORKERS] = workers
    app[GUARD] = guard
    app.router.add_get("/", _index)
    app.router.add_get("/health", _health)
    app.router.add_post("/offer", _offer)
    app.router.add_static("/static/", Path(STATIC), show_index=False)
    return app
