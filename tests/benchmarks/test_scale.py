"""benchmarks.scale: its params overrides are a valid params.yaml for the stages it runs."""

from __future__ import annotations

from benchmarks.scale import scale_params
from pipesql.params import recipes


def test_scale_params_resolve_to_the_size_asked_for() -> None:
    resolved = recipes.resolve(scale_params(50_000, 2_000, 1), "benchmarks.scale")
    synthetic = resolved["download"].data.synthetic
    assert (synthetic.n_examples, synthetic.n_databases) == (50_000, 2_000)
    assert resolved["train"].max_steps == 1
    assert resolved["golden_pairs"].workers == 1 and resolved["tokenize"].num_proc == 1
