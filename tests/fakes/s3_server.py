"""A real S3-compatible server for the tests: moto in server mode on 127.0.0.1, reached through
aioboto3 like any S3 endpoint (no Docker, no network). Import ``fake_s3_fixture`` into a test
module to use the ``fake_s3`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

CREDENTIALS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing"}
REGION = "us-east-1"


@dataclass(frozen=True)
class FakeS3:
    endpoint_url: str

    def settings(self, bucket: str) -> dict[str, Any]:
        """Settings overrides that put files in ``bucket`` of this server."""
        return {
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": REGION,
            **CREDENTIALS,
        }

    def client(self) -> Any:
        """A blocking boto3 client, for setting up and inspecting buckets from test code."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        name = f"vs-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session", name="fake_s3")
def fake_s3_fixture() -> Iterator[FakeS3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield FakeS3(f"http://{host}:{port}")
    finally:
        server.stop()
