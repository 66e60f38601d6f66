"""How request and response models mark the secrets they carry.

A secret a client sends (a password, a one-time code, a token from a mail, an LLM key) is
``writeOnly`` with ``format: password`` in the OpenAPI document, so generated clients and docs
treat it as one (masked, never expected back). Keeping secrets out of logs is the log
redaction's job (``observability/log_redaction.py``), not the models'.
A secret the server shows once (a new API key, recovery codes, a TOTP enrolment URI) says so
in its description: it cannot be read again, only replaced.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field
from pydantic.config import JsonDict

__all__ = ["SECRET_INPUT", "optional_secret", "shown_once"]

_SECRET_SCHEMA: Final[JsonDict] = {"writeOnly": True, "format": "password"}

# For Annotated[str, …, SECRET_INPUT]. No repr=False here: inside a union (an optional
# field's type) pydantic refuses field-level settings with a warning.
SECRET_INPUT: Final[Any] = Field(json_schema_extra=_SECRET_SCHEMA)


def optional_secret() -> Any:
    """The default of an optional secret field (``None``), marked on the property itself
    rather than inside its ``anyOf``, where documentation tools look for it."""
    return Field(None, json_schema_extra=dict(_SECRET_SCHEMA))


def shown_once(what: str) -> Any:
    """A response field that carries a secret this one time."""
    return Field(
        description=f"{what} Shown this once: store it now; it cannot be read again, only "
        "replaced.",
    )
