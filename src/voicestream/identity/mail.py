"""Outgoing mail: over SMTP when ``VOICESTREAM_SMTP_URL`` is set, else into an outbox folder.

The outbox (``<data_dir>/mail-outbox/``) holds one RFC 5322 ``.eml`` file per message, which
any mail client opens and tests read. Each file is written under a temporary name and renamed
into place, so a reader never sees half a message.

Both ways block (disk, network): they run in a worker thread, never on the event loop.

``smtp_url`` forms: ``smtp://[user:password@]host[:port]`` (plain, port 25),
``smtp+starttls://…`` (STARTTLS, port 587), ``smtps://…`` (TLS from the start, port 465).
"""

from __future__ import annotations

import asyncio
import email.policy
import os
import smtplib
import ssl
import tempfile
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["OUTBOX_DIR", "Mailer", "parse_smtp_url"]

OUTBOX_DIR: Final = "mail-outbox"
_SMTP_TIMEOUT_S: Final = 20.0
_PORTS: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


def parse_smtp_url(url: str) -> tuple[str, str, int, str | None, str | None]:
    """(scheme, host, port, user, password); raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in _PORTS or not parts.hostname:
        raise ValueError("use smtp://, smtp+starttls:// or smtps://[user:password@]host[:port]")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.scheme, parts.hostname, parts.port or _PORTS[parts.scheme], user, password


class Mailer:
    def __init__(self, *, sender: str, data_dir: Path, smtp_url: str | None = None) -> None:
        self._sender = sender
        self._smtp = parse_smtp_url(smtp_url) if smtp_url else None
        self.outbox = data_dir / OUTBOX_DIR

    async def send(self, to: str, subject: str, text: str) -> None:
        """Raises OSError or ``smtplib.SMTPException`` when the message could not be handed
        over (the caller decides whether that fails its request)."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        message.set_content(text)
        if self._smtp is None:
            await asyncio.to_thread(self._write_outbox, message)
        else:
            await asyncio.to_thread(self._send_smtp, message)

    def _write_outbox(self, message: EmailMessage) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        # Sortable by time, unique across processes sharing the data dir.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.eml"
        fd, temp = tempfile.mkstemp(dir=self.outbox, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(message.as_bytes())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.outbox / name)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _send_smtp(self, message: EmailMessage) -> None:
        assert self._smtp is not None
        scheme, host, port, user, password = self._smtp
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if scheme == "smtps":
            client = smtplib.SMTP_SSL(host, port, timeout=_SMTP_TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=_SMTP_TIMEOUT_S)
        with client:
            if scheme == "smtp+starttls":
                client.starttls(context=context)
            if user is not None:
                client.login(user, password or "")
            client.send_message(message)
