"""The tiny project (tinyrun.py) as session fixtures for the evaluation tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.tinyrun import TinyProject, one_thread, random_adapter, tiny_project, trained_adapter


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> TinyProject:
    return tiny_project(tmp_path_factory.getbasetemp() / "tiny")


@pytest.fixture(scope="session")
def random_lora(project: TinyProject) -> Path:
    return random_adapter(project.base, project.root / "models" / "random_adapter")


@pytest.fixture(scope="session")
def trained_lora(project: TinyProject) -> Path:
    return trained_adapter(project, project.root / "models" / "adapter")
