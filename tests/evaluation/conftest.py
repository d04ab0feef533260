"""One torch thread for the evaluation tests (the tiny project's fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaluation.tinyrun import one_thread


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield
