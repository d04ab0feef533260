"""DVC's S3 remote, end to end against moto's server on 127.0.0.1.

The committed .dvc/config names the bucket and prefix; the endpoint goes in .dvc/config.local,
as a user's would. Pushes the real download@data output, pulls it back byte-identical, and
checks that a push while the server is down fails clearly and a retry completes.
"""

from __future__ import annotations

import configparser
import hashlib
import shutil
from pathlib import Path

import pytest
from project import S3Server, copy_project, dvc

TINY_DATA = {"download": {"data": {"synthetic": {"n_databases": 2, "n_examples": 30, "rows_per_table": 10}}}}


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _remote_bucket(project: Path) -> str:
    config = configparser.ConfigParser()
    config.read(project / ".dvc" / "config")
    remote = config["core"]["remote"]
    url = config[f"'remote \"{remote}\"'"]["url"]
    assert url.startswith("s3://"), url
    return url.removeprefix("s3://").split("/", 1)[0]


@pytest.fixture
def project(tmp_path: Path, s3_server: S3Server) -> Path:
    proj = copy_project(tmp_path / "proj", TINY_DATA)
    s3_server.create_bucket(_remote_bucket(proj))
    dvc(["remote", "modify", "--local", "storage", "endpointurl", s3_server.endpoint], proj)
    return proj


def test_push_then_pull_restores_identical_files(project: Path) -> None:
    dvc(["repro", "download@data"], project)
    before = _tree_hashes(project / "data" / "raw")
    assert any(name.endswith(".sqlite") for name in before)
    dvc(["push"], project)

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "raw")
    dvc(["pull", "download@data"], project)

    assert _tree_hashes(project / "data" / "raw") == before
    assert "up to date" in dvc(["status", "download@data"], project).stdout


def test_push_while_server_down_fails_clearly_and_retry_completes(
    project: Path, s3_server: S3Server
) -> None:
    dvc(["repro", "download@data"], project)
    s3_server.stop()
    failed = dvc(["push"], project, check=False)
    assert failed.returncode != 0
    assert "Could not connect to the endpoint URL" in failed.stderr + failed.stdout

    s3_server.start()
    dvc(["push"], project)
    missing = dvc(["status", "--cloud"], project)
    assert "new:" not in missing.stdout and "missing:" not in missing.stdout, missing.stdout

    before = _tree_hashes(project / "data" / "raw")
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "raw")
    dvc(["pull", "download@data"], project)
    assert _tree_hashes(project / "data" / "raw") == before
