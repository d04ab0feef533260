"""eval stage: teacher-forced figures, then generated queries scored by execution, on the test split.

    python -m stages.eval models/base models/adapter data/samples data/raw \\
        --predictions data/eval/predictions.jsonl --plots metrics/eval_plots

dvc.yaml runs it twice on the same test questions: `eval` (the single-shot protocol of
eval.protocol) and `eval_agent` (`--protocol agent`, its own metrics file, the traces, and no
second copy of the teacher-forced figures), so `dvc metrics show` puts the two side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipesql.io import write_json
from pipesql.params.base import load_section
from pipesql.params.eval import EvalParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts.contract import check_params, read_contract
from pipesql.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate base + adapter on the test split.")
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("adapter_dir", type=Path)
    parser.add_argument("samples_dir", type=Path, help="tokenize's output: test split, test_pairs.jsonl")
    parser.add_argument("raw_dir", type=Path, help="the databases")
    parser.add_argument("--predictions", type=Path, required=True, help="one JSON row per test query")
    parser.add_argument("--plots", type=Path, required=True, help="directory of dvc plot files")
    parser.add_argument("--traces", type=Path, help="agent protocol: one JSON conversation per test query")
    parser.add_argument("--protocol", choices=["agent"], help="instead of eval.protocol (the eval_agent stage)")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--no-teacher-forced", action="store_true",
                        help="skip the loss and token accuracy (protocol-independent: another run reports them)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_section("eval", EvalParams, args.params)
    if args.protocol:
        params = params.model_copy(update={"protocol": args.protocol})
    # Prompts are built as the model was trained, from the contract it carries; a params.yaml
    # that says otherwise is a mistake to stop on, not a setting to follow.
    contract = read_contract(args.adapter_dir)
    check_params(contract, load_section("tokenize", TokenizeParams, args.params), args.params)
    tokenize_params = contract.tokenize_params()

    from pipesql.evaluation.run import evaluate  # torch: imported once the params are known good

    result = evaluate(params, tokenize_params, args.base_dir, args.adapter_dir, args.samples_dir, args.raw_dir,
                      with_teacher_forced=not args.no_teacher_forced)
    result.write(args.predictions, args.plots, args.traces)
    write_json(args.metrics, result.metrics)
    m = result.metrics
    if params.print_examples:
        print(result.show(params.print_examples))
    teacher_forced = f" teacher-forced loss {m['loss']}, token accuracy {m['token_accuracy']};" if "loss" in m else ""
    print(f"{m['examples']} test queries on {m['databases']} databases ({m['gold_errors']} more whose gold"
          f" does not run), {m['protocol']}:"
          f" execution accuracy {m['execution_accuracy']:.2%} (Spider rule {m['execution_accuracy_spider']:.2%},"
          f" BIRD rule {m['execution_accuracy_bird']:.2%}), exact match {m['exact_match']:.2%},"
          f" valid {m['valid_rate']:.2%}, lowered {m['lowered_rate']:.2%}; errors {m['errors']};"
          f"{teacher_forced} {m['generation']['queries_per_s']} queries/s")
    if "self_consistency" in m:
        sc = m["self_consistency"]
        print(f"self-consistency, {sc['num_samples']} samples: execution accuracy {sc['execution_accuracy']:.2%}"
              f" (Spider {sc['execution_accuracy_spider']:.2%}, BIRD {sc['execution_accuracy_bird']:.2%})"
              f" in {sc['seconds']} s, against {sc['main_seconds']} s for one answer each")
    if "agent" in m:
        print(f"agent: {m['agent']}")


if __name__ == "__main__":
    run_stage(main)
