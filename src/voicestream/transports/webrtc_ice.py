"""Choosing which local addresses WebRTC media may use.

aiortc (through aioice) gathers host candidates on every interface except loopback and has no
option to choose. A deployment that must keep media on one interface, and a test run that must
keep every packet on loopback, sets ``VOICESTREAM_WEBRTC_HOST_ADDRESSES``: the gathering is
pinned to those addresses, and remote candidates that such sockets could only reach through
another interface are dropped, so no check is ever sent off the allowed addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

__all__ = ["keep_remote_candidate", "pin_host_addresses", "pinned_addresses"]

_pinned: tuple[str, ...] | None = None


def pin_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (process-wide, as aioice is)."""
    import aioice.ice

    global _pinned
    pinned = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    _pinned = pinned

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in pinned
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    # aioice looks the function up in its module at gathering time, so replacing it there is
    # enough; there is no supported hook.
    aioice.ice.get_host_addresses = host_addresses

    connection = aioice.ice.Connection
    if not getattr(connection.request_received, "_voicestream_filtered", False):
        original = connection.request_received

        def request_received(
            self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
        ) -> None:
            if keep_remote_candidate(addr[0]):
                original(self, message, addr, protocol)

        request_received._voicestream_filtered = True  # type: ignore[attr-defined]  # marker
        connection.request_received = request_received  # type: ignore[method-assign]  # see above


def pinned_addresses() -> tuple[str, ...] | None:
    return _pinned


def keep_remote_candidate(host: str) -> bool:
    """Whether a remote candidate is worth checking from our (possibly pinned) addresses."""
    if _pinned is None:
        return True
    if not all(ipaddress.ip_address(a).is_loopback for a in _pinned):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an mDNS name resolves to a real interface, out of reach from loopback
