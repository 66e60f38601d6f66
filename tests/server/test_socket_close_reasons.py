"""Close reasons that carry an error's message are cut to the close frame's 123 bytes on a
character boundary: a reason cut inside a UTF-8 character is invalid, and the client then
fails the connection with 1007 instead of hearing why it was refused."""

from __future__ import annotations

import json

import aiohttp


async def test_a_refused_call_with_a_non_ascii_agent_id_keeps_its_close_code(server) -> None:
    # "not_found: no agent with id '" is 29 bytes; 2-byte characters after it put the
    # 120th byte inside one.
    agent_id = "é" * 60
    url = f"{server.ws_url}/v1/telephony/vonage"
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, params={"agent_id": agent_id}, headers=server.headers()) as ws,
    ):
        connected = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}
        await ws.send_str(json.dumps(connected))
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        assert ws.close_code == 1008, (ws.close_code, msg.extra)
        reason = msg.extra
        assert isinstance(reason, str) and reason.startswith("not_found: no agent with id")
        assert len(reason.encode()) <= 123
