"""Golden pairs into tokenized training data: splits, conversations, encoding, Arrow output.

    build_samples(golden_dir, raw_dir, model_dir, params, out_dir) -> metrics

The train stage reads `out_dir` with `datasets.load_from_disk` (splits train, dev, test; columns
in `FEATURES`); eval reads `test_pairs.jsonl` and builds its prompts with `pipesql.prompts`.
"""

from pipesql.samples.pipeline import FEATURES, TEST_PAIRS_FILE, build_samples

__all__ = ["FEATURES", "TEST_PAIRS_FILE", "build_samples"]
