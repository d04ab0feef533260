"""Pydantic models of params.yaml, one module per section (= stage), and the loader in `base`.

Each stage imports `base` and its own section's module, so dvc.yaml can list exactly those as
deps: editing one section's model reruns only the stages that read it.
"""
