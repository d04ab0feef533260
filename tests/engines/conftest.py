"""One Spark session for every Spark test (it takes seconds to start); skipped, with the reason,
only where Java or pyspark is missing: CI machines have Java 17 and install the extra."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipesql.engines.spark import INSTALL_JAVA, INSTALL_PYSPARK, SparkEngine, java_available


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkEngine]:
    pytest.importorskip("pyspark", reason=INSTALL_PYSPARK)
    if not java_available():
        pytest.skip(INSTALL_JAVA)
    with SparkEngine() as engine:
        yield engine
