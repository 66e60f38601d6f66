"""The pure pieces of the compliance rules: which addresses an allow-list admits (a dual-stack
socket's IPv4-mapped peers included), which routes read personal data, and what an export
redacts."""

from __future__ import annotations

import ipaddress

from voicestream.identity.compliance import address_listed, is_personal_data_read
from voicestream.store.workspace_data import REDACTED, redact

NETWORKS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))


def test_the_allow_list_admits_its_networks_only() -> None:
    assert address_listed("192.0.2.7", NETWORKS)
    assert address_listed("::ffff:192.0.2.7", NETWORKS)  # an IPv4 peer on an IPv6 socket
    assert address_listed("2001:db8::1", NETWORKS)
    for outside in ("192.0.3.1", "::ffff:10.0.0.1", "2001:db9::1", "not an address", "", None):
        assert not address_listed(outside, NETWORKS), outside


def test_personal_data_reads_are_the_stored_peoples_data() -> None:
    for method, route in (
        ("GET", "/elevenlabs/v1/history/{history_item_id}/audio"),
        ("GET", "/v1/convai/sessions/{conversation_id}"),
        ("GET", "/v1/files/{file_id}"),
        ("GET", "/v1/dubbing/{dub_id}/transcript/{language}"),
        ("GET", "/v1/projects/{project_id}/versions/{version}"),
        ("POST", "/elevenlabs/v1/history/download"),
    ):
        assert is_personal_data_read(method, route), route
    for method, route in (
        ("GET", "/v1/voices"),
        ("GET", "/v1/admin/compliance"),
        ("DELETE", "/v1/files/{file_id}"),
        ("POST", "/v1/dubbing"),
    ):
        assert not is_personal_data_read(method, route), route


def test_an_export_redacts_hashes_and_sealed_secrets() -> None:
    row = {
        "id": "k1",
        "key_hash": "\\x00",
        "secret_sealed": "enc:abc",
        "api_key_sealed": "enc:def",
        "password_hash": "$argon2",
        "storage_key": "w/f",
        "name": "kept",
        "token_hash": None,
    }
    assert redact(row) == {
        "id": "k1",
        "key_hash": REDACTED,
        "secret_sealed": REDACTED,
        "api_key_sealed": REDACTED,
        "password_hash": REDACTED,
        "storage_key": "w/f",
        "name": "kept",
        "token_hash": None,
    }
