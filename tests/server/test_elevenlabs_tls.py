"""The ElevenLabs SDK's ``convert_realtime`` against a second server instance served over TLS.

The sync SDK forces ``wss://`` for that helper whatever the base URL says, so the only way to
test it against a self-hosted server is TLS: a self-signed certificate made here with
``cryptography``, trusted by the SDK through ``SSL_CERT_FILE``. The audio that comes back is
checked by transcribing it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from elevenlabs import ElevenLabs

from helpers import corpus_wer, sentences, settings_for_test_server, start_test_server
from voicestream.engines.catalog import EngineRegistry
from voicestream.store.embedded import ServiceURLs


@dataclass(frozen=True)
class TLSServer:
    base_url: str  # https://127.0.0.1:<port>
    api_key: str
    cert_file: Path


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voicestream test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        # A trust anchor and a server certificate at once, which strict verifiers accept.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
async def tls_server(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TLSServer]:
    """The same app as the ``server`` fixture, on its own port, behind TLS."""
    cert_file, key_file = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("tls-server-data"),
        max_text_chars=2000,
        max_ws_message_bytes=64 * 1024,
        max_upload_bytes=4 * 1024 * 1024,
        webrtc_host_addresses="127.0.0.1",
    )
    async with start_test_server(
        settings, registry, key_workspace="tls", ssl_context=context
    ) as started:
        yield TLSServer(started.url, started.api_key, cert_file)


@pytest.fixture
def el_client(tls_server: TLSServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ElevenLabs]:
    # The socket helper builds its own default SSL context, which reads SSL_CERT_FILE; the REST
    # calls go through our httpx client, which trusts the same certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.cert_file))
    trust = ssl.create_default_context(cafile=str(tls_server.cert_file))
    with httpx.Client(verify=trust, timeout=60) as http:
        yield ElevenLabs(
            base_url=f"{tls_server.base_url}/elevenlabs",
            api_key=tls_server.api_key,
            httpx_client=http,
        )


def _word_by_word(texts: list[str]) -> Iterator[str]:
    """Text as a language model streams it: a word at a time."""
    for text in texts:
        for word in text.split():
            yield word + " "


# The SDK reads the deprecated ConnectionClosed.code when the server closes the socket (1000)
# at the end of every conversion; websockets warns about it.
SDK_READS_CLOSE_CODE = pytest.mark.filterwarnings(
    "ignore:ConnectionClosed.code is deprecated:DeprecationWarning"
)


@SDK_READS_CLOSE_CODE
async def test_convert_realtime_over_tls_says_the_text(el_client: ElevenLabs) -> None:
    texts = sentences()[:3]

    def speak() -> bytes:
        chunks = el_client.text_to_speech.convert_realtime(
            voice_id="slt", text=_word_by_word(texts), output_format="pcm_16000"
        )
        return b"".join(chunks)

    audio = await asyncio.to_thread(speak)
    assert 3.0 < len(audio) / 2 / 16000 < 30, len(audio)

    def transcribe() -> str:
        result = el_client.speech_to_text.convert(
            model_id="scribe_v1", file=("speech.pcm", audio), file_format="pcm_s16le_16"
        )
        return str(result.text)

    heard = await asyncio.to_thread(transcribe)
    wer = corpus_wer([" ".join(texts)], [heard])
    assert wer <= 0.35, (wer, heard)


async def test_convert_realtime_unknown_voice_is_refused_over_tls(el_client: ElevenLabs) -> None:
    def speak() -> bytes:
        return b"".join(
            el_client.text_to_speech.convert_realtime(
                voice_id="nobody", text=iter(["Hello there. "]), output_format="pcm_16000"
            )
        )

    with pytest.raises(websockets.InvalidStatus) as exc:
        await asyncio.to_thread(speak)
    assert exc.value.response.status_code == 404
