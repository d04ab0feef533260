"""Shared fixtures: a local S3 server (moto) with test credentials, the tiny trained project, and
one Spark session for every Spark test (skipped, with the reason, only where Java or pyspark is
missing: CI machines have Java 17 and install the `spark` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from evaluation.tinyrun import TinyProject, random_adapter, tiny_project, trained_adapter
from project import S3Server

from pipesql.engines.spark import INSTALL_JAVA, INSTALL_PYSPARK, SparkEngine, java_available


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkEngine]:
    pytest.importorskip("pyspark", reason=INSTALL_PYSPARK)
    if not java_available():
        pytest.skip(INSTALL_JAVA)
    with SparkEngine() as engine:
        yield engine


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




# The tiny project of evaluation/tinyrun.py, built once a session for eval, merge and predict.
@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> TinyProject:
    return tiny_project(tmp_path_factory.getbasetemp() / "tiny")


@pytest.fixture(scope="session")
def random_lora(project: TinyProject) -> Path:
    return random_adapter(project, project.root / "models" / "random_adapter")


@pytest.fixture(scope="session")
def trained_lora(project: TinyProject) -> Path:
    return trained_adapter(project, project.root / "models" / "adapter")
