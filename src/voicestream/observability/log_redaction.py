"""Keep credentials out of the log: API keys, tickets and tokens are redacted from every record.

Secrets reach log lines by routes nobody wrote on purpose: aiohttp warns about the WebSocket
subprotocols a client offered (``bearer.<key>``), an access or error line prints a URL with
``?authorization=…`` or ``?conversation_signature=…``, an exception's message quotes a header.
So redaction does not trust call sites; it rewrites the finished text of each record.

``install_log_redaction`` wraps the log record factory, so every record of every logger is
redacted when it is made, whichever handler later receives it (handlers added after start-up
too, and records propagated from child loggers, which a filter on a parent logger never sees).
``RedactSecrets`` is the same as a ``logging.Filter``, for handlers configured elsewhere.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Final

__all__ = ["REDACTED", "RedactSecrets", "install_log_redaction", "redact", "redact_record"]

REDACTED: Final = "[REDACTED]"

# Our API keys: the display prefix (12 characters, stored in clear and shown by `keys list`)
# stays, so an operator can still tell which key a line is about.
_API_KEY = re.compile(r"(vs_[A-Za-z0-9_-]{9})[A-Za-z0-9_-]{31}(?![A-Za-z0-9_-])")
# Refresh tokens, one-time e-mail tokens (identity/access_tokens.py) and sign-in challenges
# (identity/second_factor.py): no part is shown.
_SIGN_IN_TOKEN = re.compile(r"vs[rem]_[A-Za-z0-9_-]{20,}")
# JWTs (tickets, signed URLs, access tokens): a JSON header always encodes to "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Keys offered as WebSocket subprotocols by browser SDKs.
_KEY_SUBPROTOCOL = re.compile(r"(?i)\b(bearer\.|openai-insecure-api-key\.)[^\s,;'\"\]\)]+")
# Named values: headers in any dict or header dump ("Authorization: Bearer x",
# "'xi-api-key': 'x'"), query parameters (?token=x&ticket=y), JSON fields ("api_key": "x").
_NAMED = re.compile(
    r"(?i)(?<![A-Za-z0-9-])"
    r"((?:xi[-_])?api[-_]key|authorization|[a-z_-]*token|ticket|[a-z_-]*signature|[a-z_-]*secret)"
    r"([\"']?\s*[:=]\s*[\"']?)"
    r"((?:bearer|basic)\s+)?"
    r"(?!\[REDACTED\])[^\s&\"',;)\]}]+"
)
# A conversation's session id in a URL (?session_id=…) resumes it, so it is a credential there.
_SESSION_ID_QUERY = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(session_id=)(?!\[REDACTED\])[^\s&\"',;)\]}]+"
)


def redact(text: str) -> str:
    """``text`` with every credential it contains replaced by ``[REDACTED]``."""
    text = _KEY_SUBPROTOCOL.sub(rf"\1{REDACTED}", text)
    text = _NAMED.sub(rf"\1\2\3{REDACTED}", text)
    text = _SESSION_ID_QUERY.sub(rf"\1{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _SIGN_IN_TOKEN.sub(REDACTED, text)
    return _API_KEY.sub(rf"\1{REDACTED}", text)


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite a record in place: its message (arguments merged in), traceback and stack."""
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the redacted traceback is what prints.
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    try:
        message = record.getMessage()
    except Exception:  # malformed %-arguments: leave it to the handler, which reports them
        return
    clean = redact(message)
    if clean != message:
        record.msg = clean
        record.args = None


class RedactSecrets(logging.Filter):
    """A handler filter that redacts credentials and lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_install_lock = threading.Lock()
_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process from now on; idempotent, thread-safe.

    Also puts ``RedactSecrets`` on the root logger's current handlers, in case something
    replaces the record factory later.
    """
    global _installed
    with _install_lock:
        if not _installed:
            make_record = logging.getLogRecordFactory()

            def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = make_record(*args, **kwargs)
                redact_record(record)
                return record

            logging.setLogRecordFactory(redacting_factory)
            _installed = True
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
