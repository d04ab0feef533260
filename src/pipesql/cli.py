"""`pipesql predict`: ask the model a question about a SQLite database, see its query and rows.

    pipesql predict --model models/merged --db path/to.sqlite "How many singers are there?"
    pipesql predict --adapter models/adapter --db path/to.sqlite "How many singers are there?"

The prompt, the generation loop and the execution are eval's own (`pipesql.prompts`,
`pipesql.evaluation.generate`, `execute_safely`), with the settings of params.yaml's `tokenize`
(schema text) and `eval` (protocol, decoding) sections, so an answer here is the answer eval
would have scored. With --adapter and no --model, the base is the one the adapter names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipesql.io import DataError
from pipesql.params.base import ParamsError, load_section
from pipesql.params.eval import EvalParams
from pipesql.params.tokenize import TokenizeParams


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipesql", description="Pipe SQL from a fine-tuned model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="answer one question about a SQLite database")
    predict.add_argument("question")
    predict.add_argument("--db", type=Path, required=True, help="the SQLite database to query")
    predict.add_argument("--model", type=Path, help="a model directory: merged, or the adapter's base")
    predict.add_argument("--adapter", type=Path, help="a LoRA adapter directory to apply to --model")
    predict.add_argument("--evidence", help="external knowledge, as BIRD gives it")
    predict.add_argument("--params", type=Path, default=Path("params.yaml"),
                         help="its tokenize and eval sections are used (defaults when it is absent)")
    predict.add_argument("--rows", type=int, default=20, help="result rows to print")
    args = parser.parse_args(argv)
    try:
        return _predict(args)
    except (DataError, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _predict(args: argparse.Namespace) -> int:
    """0 when the query ran, 1 when it did not parse, lower or run (the reason is printed)."""
    eval_params, tokenize_params = _params(args.params)
    model_dir = args.model or _adapter_base(args.adapter)
    if not args.db.is_file():
        raise DataError(f"{args.db}: no such database file")

    from pipesql.evaluation.generate import HFGenerator, Task, generate_full, generate_incremental
    from pipesql.evaluation.model import load_model, resolve_dtype
    from pipesql.evaluation.run import resolve_protocol
    from pipesql.evaluation.score import check_pipe_sql
    from pipesql.prompts import format_result, schema_text
    from pipesql.sql.execute import ExecutionError, execute_safely
    from pipesql.sql.lower import LoweringError, lower_to_sqlite

    model, tokenizer = load_model(model_dir, args.adapter, resolve_dtype(eval_params.dtype))
    task = Task(args.question, schema_text(args.db, tokenize_params, tokenizer), args.evidence)
    generate = HFGenerator(model, tokenizer, eval_params.generation, progress=False)
    settings = eval_params.generation
    if resolve_protocol(eval_params.protocol, tokenize_params.mode) == "full":
        (generation,) = generate_full([task], generate, settings.max_new_tokens_full)
    else:
        (generation,) = generate_incremental(
            [task], generate, settings.max_steps, settings.max_new_tokens_step, progress=False
        )
    print(f"-- pipe SQL\n{generation.query}")
    if not generation.finished:
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


def _params(path: Path) -> tuple[EvalParams, TokenizeParams]:
    if not path.is_file():
        print(f"note: {path} not found; using the default eval and tokenize settings", file=sys.stderr)
        return EvalParams(), TokenizeParams()
    return load_section("eval", EvalParams, path), load_section("tokenize", TokenizeParams, path)


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
