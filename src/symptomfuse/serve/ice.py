"""Which of this machine's addresses the server offers as ICE host candidates.

aioice (aiortc's ICE) offers every address of every network interface except loopback. That is right
when the browser runs on another machine, but it offers nothing where only loopback exists (an isolated
network namespace, a machine without a network), and it exposes more addresses than needed when the
browser runs on the same machine. :func:`limit_host_addresses` replaces aioice's discovery for this
process with a fixed list (e.g. ``["127.0.0.1"]``); with no list, discovery is kept but falls back to
127.0.0.1 when it finds nothing. Chromium only pairs with a loopback candidate when started with
``--allow-loopback-in-peer-connection``.
"""

from __future__ import annotations

import ipaddress

import aioice.ice
from symptomfuse.errors import UsageError

_DISCOVER = aioice.ice.get_host_addresses


def parse_addresses(text: str) -> list[str]:
    """Comma-separated IP addresses, validated."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise UsageError(f"--ice-addresses: {part!r} is not an IP address (e.g. 127.0.0.1,192.168.1.5)") from None
    return out


def limit_host_addresses(addresses: list[str] | None) -> None:
    """Offer exactly ``addresses`` as ICE host candidates, or (None) discovered ones with a loopback fallback."""

    def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]

    def discovered(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = _DISCOVER(use_ipv4, use_ipv6)
        return found or (["127.0.0.1"] if use_ipv4 else [])

    aioice.ice.get_host_addresses = fixed if addresses else discovered
