"""The eval stage's library, and what `merge` and `pipesql predict` share with it.

    model           load a base model with or without its adapter; check that they fit
    generate        batched generation, incremental (operator by operator) or full
    agent           the tool loop: the model calls its tools, then answers (traces, tool figures)
    score           one prediction against its gold: validity, lowering, execution, exact match
    metrics         rates overall, by difficulty and by number of operators; plot rows
    teacher_forced  loss, perplexity and token accuracy on the test samples
    run             the eval stage end to end: `evaluate(...) -> EvalResult`

Importing the package is cheap: `score` and `metrics` need no torch, the others import it.
"""
