"""The suite pins WebRTC to loopback: nothing may be checked or answered off it."""

from __future__ import annotations

import pytest

from voicestream.transports.webrtc_ice import keep_remote_candidate, pinned_addresses


@pytest.mark.parametrize(
    ("host", "kept"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("192.0.2.2", False),
        ("10.1.2.3", False),
        ("8.8.8.8", False),
        ("0c5e7a9b-1111-2222-3333-444455556666.local", False),
    ],
)
async def test_pinned_to_loopback_keeps_only_loopback_peers(server, host: str, kept: bool) -> None:
    assert pinned_addresses() == ("127.0.0.1",)
    assert keep_remote_candidate(host) is kept


async def test_gathering_is_pinned(server) -> None:
    import aioice.ice

    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == []
