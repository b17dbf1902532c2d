"""What the live server accepts: every request is untrusted, including those a foreign web page makes.

A page the clinician has open in another tab can POST to http://127.0.0.1:8080/offer. A POST with
``Content-Type: text/plain`` needs no CORS preflight, so the browser sends it. Each offer that was
answered would hold a session until it timed out, and enough of them would lock real users out. So
``read_offer`` answers 4xx, before any session exists, to:

- a body that is not JSON (415 when the content type is not ``application/json``), too large (413), too
  deeply nested, or not ``{"sdp": str, "type": "offer"[, "token": str]}`` (400);
- an SDP that does not parse as an offer with at least one audio or video m-line (400);
- a foreign ``Origin`` (403): only the page's own origin, or those given with ``--allow-origin``;
- a missing or wrong token when the server has one (403): ``--token``, required when binding anything
  but loopback, and checked on the page (``/?token=``) and on the offer;
- a client that already holds ``per_client`` sessions (429). Behind the front process of ``serve
  --workers N`` every offer reaches a worker from the front's loopback address, so the front counts a
  browser's sessions on all its workers and names the browser to the worker it relays to; a worker believes
  that name only from a request that carries the key the front gave it (``client_of``).

The app closes any session that is not connected within ``connect_timeout_s`` of its answer, and any
connected session that has sent no sound or picture for ``media_timeout_s``: a peer that connects and
sends nothing would otherwise hold its session for as long as it answers ICE's consent checks, and one
that vanished without a goodbye (a killed browser, a phone out of range) for the 30 s aiortc takes to
give up on it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from symptomfuse.errors import UsageError

MAX_SDP = 64 * 1024
MAX_LINES = 2000


@dataclass(frozen=True)
class Guard:
    token: str | None = None
    allow_origins: tuple = ()
    per_client: int = 4
    connect_timeout_s: float = 10.0
    media_timeout_s: float = 10.0
    # The secret shared by the front process of ``serve --workers`` and its workers (the front hands it to
    # them in the environment, FRONT_KEY_ENV, never on a command line that others can list); None: no front.
    front_key: str | None = None


GUARD = web.AppKey("guard", Guard)  # the app's Guard (the single server's and the workers' front's)


TOKEN_ENV = "SYMPTOMFUSE_TOKEN"  # --token from the environment: a command line is readable by every user (ps)
FRONT_KEY_ENV = "SYMPTOMFUSE_FRONT_KEY"
FRONT_KEY_HEADER = "X-Symptomfuse-Front-Key"
CLIENT_HEADER = "X-Symptomfuse-Client"  # the browser's address, as the front process saw it


def client_of(request: web.Request, guard: Guard) -> str | None:
    """The client a request stands for (what the per-client limit counts): its own address; or, for a
    request from this worker's front process (it carries ``guard.front_key``), the browser's address that
    the front names. A name without the key is ignored: anyone on the machine can reach a worker's port."""
    named, key = request.headers.get(CLIENT_HEADER), request.headers.get(FRONT_KEY_HEADER)
    if named is not None and key is not None and guard.front_key is not None and \
            hmac.compare_digest(key.encode(), guard.front_key.encode()):
        return named
    return request.remote


def check_held(held: int, guard: Guard) -> None:
    """429 when a client already holds as many sessions as it may."""
    if held >= guard.per_client:
        raise web.HTTPTooManyRequests(text=f"this client already holds {held} sessions (at most {guard.per_client}; "
                                           "see --max-sessions-per-client)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, guard: Guard, cert) -> None:
    """Anything but loopback is reachable by others: refuse it without a token and TLS."""
    if not is_loopback(host) and (guard.token is None or cert is None):
        raise UsageError(f"--host {host} lets other machines reach the server: it needs --token (a secret the page "
                         "and every offer must carry) and --cert/--key (TLS); or keep the default 127.0.0.1")


def token_ok(given, token: str | None) -> bool:
    """Whether ``given`` is the server's token (in constant time); anything goes when it has none. The page,
    the offer and the data channel (``serve.session``) are checked with this."""
    if token is None:
        return True
    return isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())


def check_page(request: web.Request, guard: Guard) -> None:
    if not token_ok(request.query.get("token"), guard.token):
        raise web.HTTPForbidden(text="this server needs its token: open the address it printed (…/?token=…)")


def check_origin(request: web.Request, guard: Guard) -> None:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser page's request (a browser always sends Origin with a POST)
        return
    own = f"{request.scheme}://{request.host}"
    if origin != own and origin not in guard.allow_origins:
        raise web.HTTPForbidden(text=f"offers from {origin} are not accepted (only {own}; see --allow-origin)")


def check_sdp(sdp: str) -> None:
    if len(sdp) > MAX_SDP:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_SDP, actual_size=len(sdp))
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0" or len(lines) > MAX_LINES:
        raise web.HTTPBadRequest(text="the SDP does not start with v=0 (not a session description)")
    if any(len(line) < 2 or line[1] != "=" or not line[0].isalpha() for line in lines):
        raise web.HTTPBadRequest(text="the SDP has lines that are not of the form x=value")
    if not any(line.startswith(("m=audio ", "m=video ")) for line in lines):
        raise web.HTTPBadRequest(text="the offer has no audio or video m-line: nothing to analyse")


async def read_offer(request: web.Request, guard: Guard, held_by_client: Callable[[], int] = lambda: 0) -> dict:
    """The checked offer ``{"sdp", "type"}``, or an HTTP 4xx exception; see the module docstring.
    ``held_by_client()``: the sessions the client holds, counted after the body has been read, so that
    offers sent at once are counted with the sessions that the ones before them opened."""
    check_origin(request, guard)
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send the offer as application/json")
    try:
        params = json.loads(await request.text())
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='expected JSON {"sdp": "...", "type": "offer"} from RTCPeerConnection.createOffer') from None
    if not isinstance(params, dict) or set(params) - {"sdp", "type", "token"} or \
            not isinstance(params.get("sdp"), str) or params.get("type") != "offer":
        raise web.HTTPBadRequest(text='expected JSON {"sdp": "...", "type": "offer"} from RTCPeerConnection.createOffer')
    if not token_ok(params.get("token"), guard.token):
        raise web.HTTPForbidden(text="a missing or wrong token: open the address the server printed")
    check_sdp(params["sdp"])
    check_held(held_by_client(), guard)
    return {"sdp": params["sdp"], "type": "offer"}
