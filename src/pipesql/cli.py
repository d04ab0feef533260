"""`pipesql`: ask a trained model about a database, and run the pipeline's recipes.

    pipesql predict --model models/merged --db path/to.sqlite "How many singers are there?"
    pipesql predict --adapter models/adapter --db path/to.sqlite "How many singers are there?"
    pipesql predict --agent --model models/merged --db path/to.sqlite "How many singers are there?"
    pipesql recipe show qwen-coder-1.5b-spider
    pipesql recipe run qwen-coder-1.5b-spider -S download.model.revision=<hash> -S download.data.path=/data/spider

predict builds its prompt from the prompt contract inside the model directory (the adapter's,
else the merged model's) with eval's own generation loop and safe execution, so it needs no
params.yaml and its answer is the one eval would have scored; decoding follows eval's defaults,
or `--params` (its eval section) and the flags. With --agent the model calls the tools it was
trained on (eval's agent protocol, within eval.agent's budgets) and each call is printed as it
runs; its answer is then lowered and run as any other. With --adapter and no --model, the base is the one
the adapter names. A recipe (configs/recipes/<name>.yaml) runs as `dvc exp run` with one `-S`
per resolved key, so the experiment's params are exactly what `recipe show` prints.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipesql.io import DataError
from pipesql.params import recipes
from pipesql.params.base import ParamsError, load_section
from pipesql.params.eval import EvalParams
from pipesql.params.tokenize import TokenizeParams

if TYPE_CHECKING:  # torch: imported by predict only once its arguments are known good
    from pipesql.evaluation.generate import Generate, Generation


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipesql", description="Pipe SQL from a fine-tuned model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="answer one question about a SQLite database")
    predict.add_argument("question")
    predict.add_argument("--db", type=Path, required=True, help="the SQLite database to query")
    predict.add_argument("--model", type=Path, help="a model directory: merged, or the adapter's base")
    predict.add_argument("--adapter", type=Path, help="a LoRA adapter directory to apply to --model")
    predict.add_argument("--evidence", help="external knowledge, as BIRD gives it")
    predict.add_argument("--params", type=Path,
                         help="a params.yaml whose eval section sets decoding (default: eval's defaults)")
    predict.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], help="overrides eval.dtype")
    predict.add_argument("--num-beams", type=int, help="overrides eval.generation.num_beams")
    predict.add_argument("--rows", type=int, default=20, help="result rows to print")
    predict.add_argument("--agent", action="store_true",
                         help="let the model call its tools (list_tables, ..., execute_pipe_sql) before answering")

    recipe = commands.add_parser("recipe", help="show or run a recipe of configs/recipes/")
    actions = recipe.add_subparsers(dest="action", required=True)
    for name, help_text in (("show", "print the fully resolved params"),
                            ("run", "run it as an experiment (dvc exp run)")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("recipe", help="a recipe: the stem of configs/recipes/<name>.yaml")
        action.add_argument("-S", "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                            help="an override on top of the recipe, as dvc exp run -S takes it")
        action.add_argument("--recipes-dir", type=Path, default=recipes.RECIPES_DIR)
    run = actions.choices["run"]
    run.add_argument("-n", "--name", dest="experiment", help="the experiment's name (dvc exp run -n)")
    run.add_argument("--queue", action="store_true", help="queue it (dvc exp run --queue)")
    run.add_argument("--dry-run", action="store_true", help="print the dvc command, run nothing")

    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            return _predict(args)
        return _show(args) if args.action == "show" else _run(args)
    except (DataError, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- recipes


def _show(args: argparse.Namespace) -> int:
    path = recipes.recipe_path(args.recipe, args.recipes_dir)
    overrides = recipes.with_sets(recipes.read_overrides(path), args.sets)
    print(recipes.as_yaml(recipes.resolve(overrides, path, partial=True)), end="")
    try:
        recipes.resolve(overrides, path)
    except ParamsError as e:
        print(f"note: still to set before it runs (-S KEY=VALUE):\n{e}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    """Validate the whole resolution first: a recipe that cannot run fails here, not in a stage."""
    path = recipes.recipe_path(args.recipe, args.recipes_dir)
    resolved = recipes.resolve(recipes.with_sets(recipes.read_overrides(path), args.sets), path)
    command = ["dvc", "exp", "run", *recipes.set_flags(recipes.dump(resolved))]
    if args.experiment:
        command += ["-n", args.experiment]
    if args.queue:
        command.append("--queue")
    print(shlex.join(command), flush=True)
    return 0 if args.dry_run else subprocess.call(command)


# ---------------------------------------------------------------- predict


def _predict(args: argparse.Namespace) -> int:
    """0 when the query ran, 1 when it did not parse, lower or run (the reason is printed)."""
    eval_params = _eval_params(args)
    model_dir = args.model or _adapter_base(args.adapter)
    if not args.db.is_file():
        raise DataError(f"{args.db}: no such database file")

    from pipesql.evaluation.generate import (
        HFGenerator,
        Task,
        generate_full,
        generate_incremental,
    )
    from pipesql.evaluation.run import resolve_protocol
    from pipesql.evaluation.score import check_pipe_sql
    from pipesql.models import load_model, prompt_contract, resolve_dtype
    from pipesql.prompts import TOOLS, format_result, schema_text
    from pipesql.sql.execute import ExecutionError, execute_safely
    from pipesql.sql.lower import LoweringError, lower_to_sqlite

    tokenize_params = prompt_contract(model_dir, args.adapter).tokenize_params()
    model, tokenizer = load_model(model_dir, args.adapter, resolve_dtype(eval_params.dtype))
    settings = eval_params.generation
    if args.agent:
        generation = _agent_answer(args, eval_params, tokenize_params, HFGenerator(
            model, tokenizer, settings, progress=False, tools=TOOLS
        ))
    else:
        task = Task(args.question, schema_text(args.db, tokenize_params, tokenizer), args.evidence)
        generate = HFGenerator(model, tokenizer, settings, progress=False)
        if resolve_protocol(eval_params.protocol, tokenize_params.mode) == "full":
            (generation,) = generate_full([task], generate, settings.max_new_tokens_full)
        else:
            (generation,) = generate_incremental(
                [task], generate, settings.max_steps, settings.max_new_tokens_step, progress=False
            )
    print(f"-- pipe SQL\n{generation.query}")
    if not generation.finished and not args.agent:
        print(f"-- (cut off after {generation.steps} generation steps)")
    try:
        check_pipe_sql(generation.query)
        sql = lower_to_sqlite(generation.query)
        print(f"-- SQLite\n{sql}")
        result = execute_safely(args.db, sql, timeout_s=eval_params.timeout_s, max_rows=eval_params.max_rows)
    except (ValueError, ExecutionError) as e:  # LoweringError is a ValueError
        kind = "lowering" if isinstance(e, LoweringError) else "execution" if isinstance(e, ExecutionError) else "parse"
        print(f"-- {kind} error: {generation.error or e}")
        return 1
    print(f"-- result\n{format_result(result, args.rows)}")
    return 0


def _agent_answer(
    args: argparse.Namespace, eval_params: EvalParams, tokenize_params: TokenizeParams, generate: Generate
) -> Generation:
    """The agent loop on one question, each tool call and its result (shortened) printed as it runs."""
    from pipesql.evaluation.agent import (
        AgentTask,
        CallRecord,
        describe_call,
        run_agent,
        shorten,
        tool_params,
    )

    def show(_: int, call: CallRecord) -> None:
        result = shorten(call.result).replace("\n", "\n   ")
        print(f"-- turn {call.turn + 1}: {describe_call(call)}\n   {result}", flush=True)

    task = AgentTask(args.question, args.db, args.evidence)
    (trace,) = run_agent(
        [task], generate, eval_params.agent, tool_params(tokenize_params, eval_params), on_call=show, progress=False
    )
    where = {"execute_pipe_sql": "its last successful execute_pipe_sql", "final_message": "its final message",
             "none": "nowhere: no final message and no successful execute_pipe_sql"}[trace.source]
    limit = f", turn limit {eval_params.agent.max_turns} reached" if trace.hit_turn_limit else ""
    print(f"-- answer from {where} ({trace.turns} turn{'' if trace.turns == 1 else 's'}{limit})")
    return trace.generation()


def _eval_params(args: argparse.Namespace) -> EvalParams:
    """eval's decoding: its defaults, or a params file's eval section, then the flags."""
    params = load_section("eval", EvalParams, args.params) if args.params else EvalParams()
    update: dict = {}
    if args.dtype:
        update["dtype"] = args.dtype
    if args.num_beams:
        update["generation"] = params.generation.model_copy(update={"num_beams": args.num_beams})
    return params.model_copy(update=update)


def _adapter_base(adapter_dir: Path | None) -> Path:
    """The base directory an adapter was trained on, as PEFT recorded it."""
    if adapter_dir is None:
        raise DataError("give --model (a merged model or a base), --adapter, or both")
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise DataError(f"{adapter_dir}: adapter_config.json not found; run 'dvc repro train' first")
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise DataError(f"{config_path}: names no base model directory here ({base!r}); pass --model")
    return Path(base)


if __name__ == "__main__":
    sys.exit(main())
