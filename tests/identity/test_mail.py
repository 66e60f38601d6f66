"""Mail goes into the outbox folder as whole .eml files, or over SMTP when a URL is set."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from voicestream.identity.mail import OUTBOX_DIR, Mailer, parse_smtp_url


def _read(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_without_smtp_each_mail_is_an_eml_file_in_the_outbox(tmp_path: Path) -> None:
    mailer = Mailer(sender="voicestream@example.org", data_dir=tmp_path)
    await mailer.send("ada@example.com", "Your sign-in link", "token:\n\n    vse_abc\n")
    await mailer.send("bob@example.com", "Reset your password", "another\n")
    files = sorted((tmp_path / OUTBOX_DIR).iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary file left behind
    first = _read(files[0])
    assert first["To"] == "ada@example.com" and first["From"] == "voicestream@example.org"
    assert first["Subject"] == "Your sign-in link" and first["Message-ID"] and first["Date"]
    assert "vse_abc" in first.get_content()
    assert b"\r\n" in files[0].read_bytes()  # RFC 5322 line endings
    assert _read(files[1])["To"] == "bob@example.com"


class _FakeSMTP:
    """Just enough of an SMTP server (RFC 5321) to take one message."""

    def __init__(self) -> None:
        self.envelope: list[str] = []
        self.data = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip()
            verb = command.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                writer.write(b"250-fake\r\n250 8BITMIME\r\n")
            elif verb in ("MAIL", "RCPT"):
                self.envelope.append(command)
                writer.write(b"250 ok\r\n")
            elif verb == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                lines = []
                while (chunk := await reader.readline()) != b".\r\n":
                    lines.append(chunk)
                self.data = b"".join(lines)
                writer.write(b"250 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[_FakeSMTP, int]]:
    fake = _FakeSMTP()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake, port


async def test_with_an_smtp_url_mail_goes_to_the_server(smtp_server, tmp_path: Path) -> None:
    fake, port = smtp_server
    mailer = Mailer(
        sender="voicestream@example.org", data_dir=tmp_path, smtp_url=f"smtp://127.0.0.1:{port}"
    )
    await mailer.send("ada@example.com", "Confirm your e-mail address", "vse_token\n")
    assert [c.lower() for c in fake.envelope] == [
        "mail from:<voicestream@example.org>",
        "rcpt to:<ada@example.com>",
    ]
    message = email.message_from_bytes(fake.data, policy=email.policy.default)
    assert message["Subject"] == "Confirm your e-mail address"
    assert not (tmp_path / OUTBOX_DIR).exists()


def test_smtp_urls() -> None:
    assert parse_smtp_url("smtp+starttls://u%40x:p%3Aw@mail.example.com") == (
        "smtp+starttls",
        "mail.example.com",
        587,
        "u@x",
        "p:w",
    )
    assert parse_smtp_url("smtps://mail.example.com:2465")[1:3] == ("mail.example.com", 2465)
    with pytest.raises(ValueError):
        parse_smtp_url("http://mail.example.com")
