"""Shared fixtures: a local S3 server (moto) with test credentials in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from project import S3Server


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


