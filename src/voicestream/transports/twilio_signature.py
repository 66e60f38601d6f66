"""Twilio's request signature (``X-Twilio-Signature``), checked without Twilio's library.

Twilio signs each webhook with the account's auth token: HMAC-SHA1 over the full URL it
requested (scheme, host, path and query, exactly as configured) followed by every POST
parameter, sorted by name, as name then value with nothing between; base64 of the digest is the
header. As Twilio's own validators do, the URL is tried as given, without its port and with the
scheme's default port, because proxies add or drop it.

Only form-encoded webhooks are covered (voice calls are); JSON bodies signed through a
``bodySHA256`` query parameter are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["compute_signature", "signature_matches"]

_DEFAULT_PORTS = {"https": 443, "http": 80}


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for ``url`` with these POST parameters.

    A name given several times contributes each of its distinct values, in sorted order.
    """
    data = url
    for name, value in sorted(set(params)):
        data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str
) -> bool:
    """Whether ``signature`` is Twilio's for this request (compared in constant time)."""
    pairs = list(params)
    given = signature.encode()
    return any(
        hmac.compare_digest(compute_signature(auth_token, candidate, pairs).encode(), given)
        for candidate in _url_variants(url)
    )


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets in a netloc
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number: only the URL as given can match
        return [url]
    variants = [url, urlunsplit(parts._replace(netloc=prefix + host))]
    if port is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port}")))
    return list(dict.fromkeys(variants))
