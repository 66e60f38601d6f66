"""Where webhooks may go: a URL check at creation, and a resolver that checks again at send time.

An endpoint URL is the workspace's, not the operator's: without a guard, anyone who may add a
webhook could make the server send requests into its own network (the cloud metadata address,
the database, an admin port on loopback). So unless the operator allows private targets
(``VOICESTREAM_WEBHOOK_ALLOW_PRIVATE``), every address the host resolves to must be a public
unicast one: not loopback, private, link-local, shared (CGNAT), multicast, reserved or
unspecified, for IPv4 and IPv6 alike, judging an IPv6 address that embeds an IPv4 one
(IPv4-mapped, 6to4, Teredo) by the IPv4 address inside it.

The check runs twice. At creation, so a mistake is a clear 422 at once; and at send time,
inside the HTTP client's resolver (``GuardedResolver``), because DNS may answer differently
later (rebinding): the address checked there is the very address the connection is made to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ..errors import ValidationFailed

__all__ = [
    "MAX_URL_CHARS",
    "GuardedResolver",
    "RefusedAddress",
    "check_address",
    "check_url",
    "parse_url",
]

MAX_URL_CHARS: Final = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(OSError):
    """The webhook's host is (or resolves to) an address webhooks may not go to."""


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def check_address(address: IPAddress) -> None:
    """Raises RefusedAddress unless ``address`` is a public unicast address."""
    judged: IPAddress = address
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_v4(address)):
        judged = inner
    # is_global alone lets multicast through (224/4 and ff0e::/16 count as global).
    if not judged.is_global or judged.is_multicast or judged.is_reserved:
        raise RefusedAddress(f"{address} is not a public address")


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of an endpoint URL; raises ValidationFailed for anything but an absolute
    http(s) URL with a host."""
    if len(url) > MAX_URL_CHARS:
        raise _bad_url(f"at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad_url(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad_url("must be an absolute http:// or https:// URL with a host")
    if parts.fragment:
        raise _bad_url("must not have a #fragment")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise _bad_url("must not contain spaces or control characters")
    return parts.hostname, port if port is not None else (443 if parts.scheme == "https" else 80)


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raises ValidationFailed when ``url`` is malformed or, unless ``allow_private``, its host
    is or resolves to an address webhooks may not go to (or does not resolve)."""
    host, port = parse_url(url)
    if allow_private:
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise _bad_url(f"its host {host!r} does not resolve ({exc})") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    try:
        for address in addresses:
            check_address(address)
    except RefusedAddress as exc:
        raise _bad_url(
            f"{exc}: webhooks go to public addresses only (the operator may allow private "
            "ones with VOICESTREAM_WEBHOOK_ALLOW_PRIVATE)"
        ) from None


def _bad_url(message: str) -> ValidationFailed:
    return ValidationFailed(
        f"url {message}", details={"fields": [{"field": "url", "message": message}]}
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing (RefusedAddress) a host any of whose addresses is not
    public: what the connection is then made to has been checked.

    aiohttp does not resolve IP literals, so the sender checks those itself (``check_url``
    needs no DNS for them).
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(ipaddress.ip_address(result["host"]))
        return results

    async def close(self) -> None:
        await self._inner.close()
