"""benchmarks/run.py: one command writes every benchmark's result, and a failure loses no other.

The harness runs as its users run it (`python -m benchmarks.run` in the repo root) with --quick
and the cheap benchmarks only; dvc_noop is pointed at a one-stage DVC project in tmp_path, so
the repo's own pipeline is never checked or run.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

from project import REPO_ROOT, run

ENV = {"DVC_NO_ANALYTICS": "1"}


def _dvc_project(root: Path) -> Path:
    """One stage, copy in.txt to out.txt, already reproduced: a `dvc repro` has nothing to do."""
    root.mkdir()
    run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], root, env=ENV)
    (root / "in.txt").write_text("hello\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    run([sys.executable, "-m", "dvc", "repro", "-q"], root, env=ENV)
    return root


def _harness(out: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out), *args],
        REPO_ROOT, check=False, env=ENV,
    )
    assert out.exists(), f"no results written (exit {proc.returncode})\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(out.read_text()), proc.stderr


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_common(doc: dict[str, Any], names: list[str]) -> None:
    assert doc["quick"] is True and "note" in doc
    assert doc["command"].startswith("python -m benchmarks.run ")
    machine = doc["machine"]
    assert _is_positive_number(machine["cpu_count"]) and _is_positive_number(machine["torch_threads"])
    assert machine["platform"] and "cuda_device" in machine
    assert sorted(doc["benchmarks"]) == sorted(names)   # the file's keys are sorted
    for rec in doc["benchmarks"].values():
        started = datetime.datetime.fromisoformat(rec["started_at"])
        assert datetime.datetime.fromisoformat(rec["finished_at"]) >= started
        assert rec["elapsed_s"] >= 0 and isinstance(rec["params"], dict)
        assert rec["command"].startswith("python -m benchmarks.")


def test_quick_run_records_each_benchmark_with_positive_figures(tmp_path: Path) -> None:
    project = _dvc_project(tmp_path / "project")
    out = tmp_path / "results.json"

    code, doc, stderr = _harness(
        out, "--only", "dvc_noop", "tokenize", "synthetic", "--runs", "2", "--dvc-repo", str(project)
    )

    assert code == 0, stderr[-3000:]
    _check_common(doc, ["synthetic", "tokenize", "dvc_noop"])
    assert doc["failed"] == []
    for name, rec in doc["benchmarks"].items():
        assert rec["status"] == "ok", (name, rec.get("error"), rec.get("skipped"))
        assert rec["figures"] and all(_is_positive_number(v) for v in rec["figures"].values()), rec["figures"]
        assert rec["params"]["runs"] == 2
    benchmarks = doc["benchmarks"]
    assert benchmarks["synthetic"]["command"] == "python -m benchmarks.synthetic --examples 2000 --runs 2"
    assert benchmarks["tokenize"]["result"]["samples"] > 0
    assert len(benchmarks["dvc_noop"]["result"]["seconds"]) == 2
    assert "[3/3] dvc_noop" in stderr   # progress names the benchmark


def test_a_failure_is_recorded_and_the_others_still_written(tmp_path: Path) -> None:
    project = _dvc_project(tmp_path / "project")
    (project / "in.txt").write_text("changed\n")   # the copy stage would run now
    out = tmp_path / "results.json"
    missing = tmp_path / "no-samples"

    code, doc, _ = _harness(
        out, "--only", "synthetic", "train_throughput", "dvc_noop",
        "--samples", str(missing), "--dvc-repo", str(project),
    )

    assert code != 0
    _check_common(doc, ["synthetic", "train_throughput", "dvc_noop"])
    assert doc["failed"] == ["train_throughput"]
    failed = doc["benchmarks"]["train_throughput"]
    assert failed["status"] == "error" and str(missing) in failed["error"] and "result" not in failed
    synthetic = doc["benchmarks"]["synthetic"]
    assert synthetic["status"] == "ok" and _is_positive_number(synthetic["figures"]["examples_per_s"])
    skipped = doc["benchmarks"]["dvc_noop"]
    assert skipped["status"] == "skipped" and skipped["would_run"] == ["copy"] and "copy" in skipped["skipped"]
    assert (project / "out.txt").read_text() == "hello\n"   # the pipeline itself was not run
