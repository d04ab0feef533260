"""The whole DVC pipeline on copies of the project: what reruns, experiments, the queue, the remote,
and that the committed dvc.lock's data stages reproduce bit for bit.

One shrunk project (tiny data, a 1-layer 32-wide scratch model, 3 optimizer steps) is reproduced
once for the module and reused by the rerun, experiment, queue and remote tests, in file order;
each leaves it reproduced. DVC's own log lines tell what ran: "Running stage 'x':" against
"Stage 'x' didn't change, skipping" (or "... is cached - skipping run", a run-cache restore).
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from project import REPO_ROOT, S3Server, copy_project, dvc, run

pytestmark = pytest.mark.slow

STAGES = ("download@data", "download@model", "golden_pairs", "tokenize", "train", "eval", "eval_agent", "merge")
DATA_STAGES = ("download@data", "download@model", "golden_pairs", "tokenize")
MODEL_STAGES = ("train", "eval", "eval_agent", "merge")
# Every stage of the default pipeline, each as small as its params allow, so that a full
# `dvc repro` is about a minute on 2 cores (mostly the imports of torch and transformers).
SHRUNK: dict[str, Any] = {
    "download": {
        "data": {"synthetic": {"n_databases": 3, "n_examples": 200, "rows_per_table": 10}},
        "model": {"scratch": {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "num_key_value_heads": 1}},
    },
    "golden_pairs": {"workers": 1},
    "tokenize": {"num_proc": 1},
    # an explicit rate, so the experiment below changes it whatever the default is
    "train": {"max_steps": 3, "batch_size": 2, "learning_rate": 1.0e-2, "lora": {"r": 4, "alpha": 8.0},
              "eval_steps": 3, "save_steps": 3, "eval_max_samples": 4, "eval_batch_size": 4},
    "eval": {"max_examples": 4, "print_examples": 1,
             "generation": {"batch_size": 8, "max_steps": 3, "max_new_tokens_step": 16},
             "agent": {"max_turns": 2, "max_new_tokens_turn": 16}},
    "merge": {"check_prompts": 1, "check_max_tokens": 64},
}
QUEUE_TIMEOUT_S = 420


def _stage_log(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Stage name -> ran | skipped | cached, from DVC's log of a repro or an experiment."""
    return _parse_stage_log(proc.stdout + proc.stderr)


def _parse_stage_log(text: str) -> dict[str, str]:
    out = {}
    for match in re.finditer(r"^Running stage '([^']+)'", text, re.MULTILINE):
        out[match[1]] = "ran"
    for match in re.finditer(r"^Stage '([^']+)' didn't change, skipping", text, re.MULTILINE):
        out[match[1]] = "skipped"
    for match in re.finditer(r"^Stage '([^']+)' is cached - skipping run", text, re.MULTILINE):
        out[match[1]] = "cached"
    return out


def _ran(log: dict[str, str]) -> set[str]:
    return {stage for stage, what in log.items() if what == "ran"}


def _show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message, "--allow-empty"], project)


def _set_param(project: Path, dotted: str, value: object) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _lock_outs(lock_path: Path) -> dict[str, str]:
    """Output path -> md5 over every stage of a dvc.lock."""
    lock = yaml.safe_load(lock_path.read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The shrunk project after one full `dvc repro`, committed; and that repro's output."""
    proj = copy_project(tmp_path_factory.mktemp("pipeline") / "proj", SHRUNK)
    first = dvc(["repro"], proj)
    _commit(proj, "reproduced")
    return proj, first


# ---------------------------------------------------------------- 1. only changed stages rerun


def test_first_repro_runs_every_stage_in_order(project: tuple[Path, Any]) -> None:
    proj, first = project
    ran = re.findall(r"^Running stage '([^']+)'", first.stdout, re.MULTILINE)
    assert ran == list(STAGES), _show(first)
    for path in ("data/raw", "models/base", "data/golden", "data/samples", "models/adapter",
                 "data/eval/predictions.jsonl", "models/merged", "checkpoints/train/checkpoint-3"):
        assert (proj / path).exists(), path
    train = json.loads((proj / "metrics" / "train.json").read_text())
    assert train["steps"] == 3
    evaluation = json.loads((proj / "metrics" / "eval.json").read_text())
    assert evaluation["examples"] == 4 and 0 <= evaluation["execution_accuracy"] <= 1


def test_second_repro_runs_nothing(project: tuple[Path, Any]) -> None:
    proj, _ = project
    again = dvc(["repro"], proj)
    assert _stage_log(again) == dict.fromkeys(STAGES, "skipped"), _show(again)
    assert "Data and pipelines are up to date." in again.stdout


def test_an_eval_param_reruns_only_the_eval_stage_that_reads_it(project: tuple[Path, Any]) -> None:
    proj, _ = project
    current = yaml.safe_load((proj / "params.yaml").read_text())["eval"]
    for key, value, stage in (
        ("eval.teacher_forced_batch_size", current["teacher_forced_batch_size"] + 1, "eval"),
        ("eval.agent.max_turns", current["agent"]["max_turns"] + 1, "eval_agent"),
    ):
        _set_param(proj, key, value)
        proc = dvc(["repro"], proj)
        log = _stage_log(proc)
        assert _ran(log) == {stage}, (key, _show(proc))
        assert set(log) == set(STAGES), _show(proc)
        _commit(proj, key)


def test_experiment_on_a_train_param_reruns_train_eval_merge(project: tuple[Path, Any]) -> None:
    proj, _ = project
    before = json.loads((proj / "metrics" / "train.json").read_text())
    proc = dvc(["exp", "run", "-S", "train.learning_rate=5.0e-3"], proj)
    log = _stage_log(proc)
    assert _ran(log) == set(MODEL_STAGES), _show(proc)
    assert {s: log.get(s) for s in DATA_STAGES} == dict.fromkeys(DATA_STAGES, "skipped"), _show(proc)
    name = re.search(r"Ran experiment\(s\): (\S+)", proc.stdout + proc.stderr)
    assert name, _show(proc)

    experiments = _experiments(proj)
    assert name[1] in experiments, experiments.keys()
    exp = experiments[name[1]]
    assert exp["params"]["train"]["learning_rate"] == 5.0e-3
    assert exp["metrics"]["metrics/train.json"]["steps"] == 3
    assert exp["metrics"]["metrics/train.json"]["eval_loss"] != before["eval_loss"]
    assert "execution_accuracy" in exp["metrics"]["metrics/eval.json"]

    # `dvc exp run` leaves the experiment's results in the workspace: against HEAD, the train
    # figures changed, and no data stage's metrics did (unchanged metrics are not listed).
    diff = json.loads(dvc(["metrics", "diff", "--json"], proj).stdout)
    assert "eval_loss" in diff.get("metrics/train.json", {}), diff
    assert set(diff) <= {f"metrics/{s}.json" for s in MODEL_STAGES}, diff
    _commit(proj, "train.learning_rate 5e-3")


def test_a_decompiler_edit_reruns_golden_pairs_and_what_its_output_changes(project: tuple[Path, Any]) -> None:
    """DVC reruns downstream of outputs that changed, not of stages that merely ran.

    A comment reruns golden_pairs only (the one stage that lists decompile.py): it writes a
    byte-identical data/golden, so nothing after it runs. An edit that changes what the
    decompiler writes (lowercased queries: string literals then differ, so those pairs fail the
    execution check) changes data/golden, and every stage after it reruns.
    """
    proj, _ = project
    decompiler = proj / "src" / "pipesql" / "sql" / "decompile.py"
    before = _lock_outs(proj / "dvc.lock")
    with decompiler.open("a") as f:
        f.write("\n# a comment: the same decompiler\n")
    proc = dvc(["repro"], proj)
    log = _stage_log(proc)
    assert _ran(log) == {"golden_pairs"}, _show(proc)
    assert all(log[s] == "skipped" for s in STAGES if s != "golden_pairs"), _show(proc)
    assert _lock_outs(proj / "dvc.lock") == before
    _commit(proj, "decompiler comment")

    with decompiler.open("a") as f:
        f.write(
            "\n_decompile = decompile\n\n\n"
            "def decompile(sql: str, **options) -> str:\n"
            "    return _decompile(sql, **options).lower()\n"
        )
    proc = dvc(["repro"], proj)
    log = _stage_log(proc)
    assert _ran(log) == {"golden_pairs", "tokenize", *MODEL_STAGES}, _show(proc)
    assert {log["download@data"], log["download@model"]} == {"skipped"}, _show(proc)
    after = _lock_outs(proj / "dvc.lock")
    assert after["data/golden"] != before["data/golden"] and after["data/samples"] != before["data/samples"]
    run(["git", "checkout", "--", "src/pipesql/sql/decompile.py"], proj)
    dvc(["repro"], proj)  # back to the committed decompiler for the tests that follow
    _commit(proj, "decompiler restored")


def _experiments(project: Path) -> dict[str, dict[str, Any]]:
    """Experiment name -> its params (params.yaml), metrics (file -> figures) and state."""
    rows = json.loads(dvc(["exp", "show", "--json"], project).stdout)
    out = {}
    for baseline in rows:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                out[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": {path: m["data"] for path, m in (data.get("metrics") or {}).items()},
                    "status": data.get("status"),
                }
    return out


# ---------------------------------------------------------------- 5. the experiments queue


def test_queued_experiments_run_and_show(project: tuple[Path, Any]) -> None:
    """Two queued learning rates, one celery worker: each reruns only train, eval and merge.

    The worker runs each experiment in a temporary copy of the workspace under .dvc/tmp/exps;
    PYTHONPATH's relative entries (see project.py) make its stages run that copy's code.
    """
    proj, _ = project
    queued = dvc(["exp", "run", "--queue", "-S", "train.learning_rate=1.0e-4,2.0e-4"], proj)
    names = re.findall(r"Queued experiment '([^']+)'", queued.stdout + queued.stderr)
    assert len(names) == 2, _show(queued)
    try:
        dvc(["queue", "start", "-j", "1"], proj)
        status = _wait_for_queue(proj, names)
    finally:
        dvc(["queue", "stop", "--kill"], proj, check=False)
    for name in names:
        logs = dvc(["queue", "logs", name], proj, check=False)
        assert status[name] == "Success", f"{status}\n{_show(logs)}"
        log = _parse_stage_log(logs.stdout)
        assert _ran(log) == set(MODEL_STAGES), _show(logs)
        assert {s: log.get(s) for s in DATA_STAGES} == dict.fromkeys(DATA_STAGES, "skipped"), _show(logs)

    experiments = _experiments(proj)
    rates = {experiments[n]["params"]["train"]["learning_rate"] for n in names}
    assert rates == {1.0e-4, 2.0e-4}
    for name in names:
        train = experiments[name]["metrics"]["metrics/train.json"]
        assert train["steps"] == 3 and train["eval_loss"] is not None, train
        assert "execution_accuracy" in experiments[name]["metrics"]["metrics/eval.json"]


def _wait_for_queue(project: Path, names: list[str]) -> dict[str, str]:
    """Each task's status once none is queued or running; fails after QUEUE_TIMEOUT_S."""
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while True:
        proc = dvc(["queue", "status"], project)
        status = {}
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1] in names:
                status[fields[1]] = fields[-1]
        if len(status) == len(names) and not {"Queued", "Running"} & set(status.values()):
            return status
        assert time.monotonic() < deadline, f"queue not done after {QUEUE_TIMEOUT_S} s\n{_show(proc)}"
        time.sleep(2)


# ---------------------------------------------------------------- 2. the remote


def test_push_then_a_fresh_clone_pulls_everything_but_the_checkpoints(
    project: tuple[Path, Any], s3_server: S3Server, tmp_path: Path
) -> None:
    proj, _ = project
    _commit(proj, "before push")
    s3_server.create_bucket(_bucket(proj))
    dvc(["remote", "modify", "--local", "storage", "endpointurl", s3_server.endpoint], proj)
    dvc(["push"], proj)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp_path)
    shutil.copy2(proj / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    # checkpoints/train is `push: false`: never on the remote, so a plain pull fails on it
    # and --allow-missing is how a fresh clone pulls (as the README says).
    pulled = dvc(["pull", "--allow-missing"], clone)

    outs = _lock_outs(clone / "dvc.lock")
    assert "checkpoints/train" in outs
    for path in outs:
        if path != "checkpoints/train":
            assert (clone / path).exists(), f"{path} not pulled\n{_show(pulled)}"
    assert not (clone / "checkpoints" / "train").exists()

    status = dvc(["status", "--json"], clone)
    assert json.loads(status.stdout) == {
        "train": [{"changed outs": {"checkpoints/train": "not in cache"}}]
    }, _show(status)
    dry = dvc(["repro", "--allow-missing", "--dry"], clone)
    assert _stage_log(dry) == dict.fromkeys(STAGES, "skipped"), _show(dry)


def _bucket(project: Path) -> str:
    config = configparser.ConfigParser()
    config.read(project / ".dvc" / "config")
    url = config[f"'remote \"{config['core']['remote']}\"'"]["url"]
    return url.removeprefix("s3://").split("/", 1)[0]


# ---------------------------------------------------------------- 3. the data stages reproduce


def test_default_data_stages_reproduce_the_committed_lock(tmp_path: Path) -> None:
    """The CI check of the data stages: the default params give the committed outputs, bit for bit.

    Read at test time from the repo's dvc.lock, which is regenerated after tuning; its deps
    may name other files than this checkout's dvc.yaml, but its outputs must match.
    """
    committed = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text()) if (REPO_ROOT / "dvc.lock").exists() else None
    stages = (committed or {}).get("stages", {})
    missing = [s for s in DATA_STAGES if s not in stages]
    if missing:
        pytest.skip(f"the committed dvc.lock has no {', '.join(missing)}")
    expected = {out["path"]: out["md5"] for s in DATA_STAGES for out in stages[s]["outs"]}

    proj = copy_project(tmp_path / "proj")
    proc = dvc(["repro", "download", "golden_pairs", "tokenize"], proj)
    assert _ran(_stage_log(proc)) == set(DATA_STAGES), _show(proc)
    fresh = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    got = {out["path"]: out["md5"] for s in DATA_STAGES for out in fresh[s]["outs"]}
    for path in ("data/raw", "models/base", "data/golden", "data/samples"):
        assert path in expected, f"the committed dvc.lock has no output {path}"
    differ = sorted(p for p in expected if got.get(p) != expected[p])
    assert not differ, (
        f"outputs differ from the committed dvc.lock: {differ}; the deps that changed since it"
        f" was written (run the data stages and commit dvc.lock if the change is meant):\n"
        + "\n".join(f"  {s}: {_changed_deps(stages[s], fresh[s])}" for s in DATA_STAGES)
    )


def _changed_deps(committed: dict[str, Any], fresh: dict[str, Any]) -> str:
    """What differs between two lock entries of one stage: dep paths and hashes, and params."""
    old = {d["path"]: d["md5"] for d in committed.get("deps", [])}
    new = {d["path"]: d["md5"] for d in fresh.get("deps", [])}
    changed = [
        f"{path} ({'gone' if path not in new else 'new' if path not in old else 'changed'})"
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]
    if committed.get("params") != fresh.get("params"):
        changed.append("params")
    return ", ".join(changed) or "none"
