"""dvc.yaml's two eval stages: together they declare every eval key, each only the keys it reads."""

from __future__ import annotations

import yaml
from project import REPO_ROOT
from pydantic import BaseModel

from pipesql.params.eval import EvalParams

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
# What each protocol's run never reads: the agent loop its own budgets, single-shot eval the
# agent's; the teacher-forced figures are eval's alone (eval_agent runs --no-teacher-forced).
UNREAD = {
    "eval": {"eval.agent"},
    "eval_agent": {
        "eval.protocol",
        "eval.teacher_forced_batch_size",
        "eval.generation.max_steps",
        "eval.generation.max_new_tokens_step",
        "eval.generation.max_new_tokens_full",
        "eval.generation.num_samples",
    },
}


def leaves(model: type[BaseModel], prefix: str) -> set[str]:
    """Every params key of a section, nested models spelled out."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        kind = field.annotation
        keys |= leaves(kind, key) if isinstance(kind, type) and issubclass(kind, BaseModel) else {key}
    return keys


def declared(stage: str) -> set[str]:
    """The leaf keys a stage's `params:` covers (a listed section covers all its keys)."""
    listed = STAGES[stage]["params"]
    return {key for key in leaves(EvalParams, "eval") if any(key == p or key.startswith(p + ".") for p in listed)}


def test_each_eval_stage_declares_exactly_the_keys_it_reads() -> None:
    every = leaves(EvalParams, "eval")
    for stage, unread in UNREAD.items():
        assert declared(stage) == every - {k for k in every if any(k == u or k.startswith(u + ".") for u in unread)}, stage


def test_both_protocols_share_deps_and_the_agent_stage_runs_the_agent() -> None:
    assert STAGES["eval_agent"]["deps"] == STAGES["eval"]["deps"]
    cmd = STAGES["eval_agent"]["cmd"].split()
    assert cmd[cmd.index("--protocol") + 1] == "agent" and "--no-teacher-forced" in cmd
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in STAGES["eval_agent"]["outs"]}
    assert {"data/eval/traces.jsonl", "metrics/eval_agent.json"} <= outs
    assert not outs & {next(iter(o)) if isinstance(o, dict) else o for o in STAGES["eval"]["outs"]}
