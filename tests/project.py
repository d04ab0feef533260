"""Helpers for tests that run the pipeline: a local S3 server and copies of the project."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a pipeline run needs from the repo; data and models are produced, not copied.
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src", "configs", ".dvc/config", ".gitignore")
# The package is installed editable from this repo's src/, so a copy's stages would import this
# repo's code. Relative entries resolve against each process's working directory: the copy's root
# for `dvc repro`, and the temporary workspace (a copy of the copy) for queued experiments, whose
# code then is the code that DVC hashed for them. The root is there for `python -m stages.x`.
COPY_PYTHONPATH = os.pathsep.join(["src", "."])


class S3Server:
    """moto's S3 server on 127.0.0.1, restartable on the same port with its buckets intact.

    moto keeps its state in process-wide backends, so a stopped and restarted server still
    holds what was pushed before: that lets a test take the remote down and bring it back.
    """

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(
            Bucket=name
        )


def copy_project(dest: Path, params: dict | None = None) -> Path:
    """A git + DVC project at dest with this repo's pipeline code; `params` overrides params.yaml.

    Overrides are nested dicts merged into the repo's params.yaml, so tests shrink the default
    pipeline without restating it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO_ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    if params:
        merged = merge_params(yaml.safe_load((dest / "params.yaml").read_text()), params)
        (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@pipesql.local"], dest)
    run(["git", "config", "user.name", "test"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "project copy"], dest)
    return dest


def run(
    cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with this interpreter's venv first on PATH (stages call `python`)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def dvc(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """DVC in a project copy (cwd: its root); its stages run the copy's own src/ and stages/."""
    return run([sys.executable, "-m", "dvc", *args], cwd, check=check, env={"PYTHONPATH": COPY_PYTHONPATH})


def merge_params(base: dict, override: dict) -> dict:
    """`override` merged into a copy of `base`, nested dicts key by key (`{"guard": {"window": 3}}`
    keeps the other guard keys); neither argument is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_params(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
