"""Vonage's Call Control Object (NCCO) for an answer webhook: one ``connect`` action that
opens a WebSocket to us (https://developer.vonage.com/en/voice/voice-api/ncco-reference).

Vonage reads the answer as a JSON array of actions; only the one we send is modelled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

__all__ = ["Ncco", "NccoConnect", "NccoWebSocket", "connect_websocket"]


class NccoWebSocket(BaseModel):
    # Defaults are always sent: a response schema says they are there.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    type: Literal["websocket"] = "websocket"
    uri: str = Field(description="The call's socket, with a short-lived ticket in its query.")
    content_type: str = Field(
        serialization_alias="content-type",
        description="The audio both ways, e.g. `audio/l16;rate=16000`.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Arrive as fields of `websocket:connected`."
    )


class NccoConnect(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    action: Literal["connect"] = "connect"
    endpoint: list[NccoWebSocket]


class Ncco(RootModel[list[NccoConnect]]):
    """The answer: Vonage runs the actions in order."""


def connect_websocket(uri: str, *, rate: int, headers: dict[str, str] | None = None) -> Ncco:
    """Connect the call to ``uri`` as 16-bit linear PCM at ``rate`` Hz."""
    endpoint = NccoWebSocket(uri=uri, content_type=f"audio/l16;rate={rate}", headers=headers or {})
    return Ncco([NccoConnect(endpoint=[endpoint])])
