"""params.yaml validation: each error names the file, the dotted key and the offending value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipesql.params.base import ParamsError, load_section
from pipesql.params.download import DownloadParams
from pipesql.params.recipes import SECTIONS
from project import REPO_ROOT


def _write(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize("section", SECTIONS)
def test_repo_params_yaml_is_valid_and_matches_model_defaults(section: str) -> None:
    params = load_section(section, SECTIONS[section], REPO_ROOT / "params.yaml")
    assert params == SECTIONS[section]()  # params.yaml states every default explicitly


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"download": {"data": {"seed": "x"}}}, "download.data.seed: Input should be a valid integer"),
        ({"download": {"data": {"sorce": "x"}}}, "download.data.sorce: unknown key, got 'x'"),
        ({"download": {"data": {"source": "ftp"}}}, "download.data.source: Input should be"),
        (
            {"download": {"model": {"scratch": {"hidden_size": -1}}}},
            "download.model.scratch.hidden_size: must be > 0, got -1",
        ),
        (
            {"download": {"data": {"synthetic": {"rows_per_table": 1}}}},
            "download.data.synthetic.rows_per_table: must be >= 5, got 1",
        ),
        ({"download": {"data": {"source": "spider"}}}, "download.data: path is required"),
        ({"download": {"model": {"source": "hub"}}}, "download.model: revision is required"),
        (
            {"download": {"data": {"source": "url", "url": {"url": "http://x/a.zip"}}}},
            "download.data: url.url and url.sha256 are required",
        ),
        (
            {"download": {"data": {"url": {"sha256": "abc"}}}},
            "download.data.url.sha256: String should match pattern",
        ),
        (
            {"download": {"model": {"scratch": {"hidden_size": 100, "num_attention_heads": 3}}}},
            "download.model.scratch: hidden_size must be a multiple of num_attention_heads",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_errors_name_key_and_value(tmp_path: Path, body: dict, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ParamsError) as err:
        load_section("download", DownloadParams, path)
    assert f"{path}: {expected}" in str(err.value)


def test_float_written_as_yaml_string_is_accepted(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e4` as a string; the float field converts it.
    path = tmp_path / "params.yaml"
    path.write_text("download:\n  model:\n    scratch:\n      rope_theta: 1e4\n")
    assert load_section("download", DownloadParams, path).model.scratch.rope_theta == 10000.0


def test_missing_section_means_defaults_and_missing_file_is_named(tmp_path: Path) -> None:
    assert load_section("download", DownloadParams, _write(tmp_path, {"other": {}})) == DownloadParams()
    with pytest.raises(ParamsError, match="nope.yaml: file not found"):
        load_section("download", DownloadParams, tmp_path / "nope.yaml")


def test_params_are_frozen() -> None:
    with pytest.raises(Exception):
        DownloadParams().data.seed = 3  # type: ignore[misc]
