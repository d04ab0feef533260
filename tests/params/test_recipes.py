"""Recipes: overrides in params.yaml's shape, resolved over the defaults and run through dvc exp run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from pipesql.cli import main
from pipesql.params import recipes
from pipesql.params.base import ParamsError, load_section
from pipesql.params.train import ALL_PROJECTIONS
from project import REPO_ROOT

RECIPES = REPO_ROOT / "configs" / "recipes"
HUB_RECIPES = ["qwen-coder-1.5b-spider", "qwen-coder-7b-bird"]
# What a user supplies on the command line for a hub recipe.
USER_SETS = ["download.model.revision=0123456789abcdef", 'download.data.path=/data/the "user\'s" release']
MIXTURE = "spider-bird-mixture"
MIXTURE_SETS = ["download.model.revision=0123456789abcdef", "download.data.sources.0.path=/data/spider",
                "download.data.sources.1.path=/data/bird"]


def _resolved(name: str, sets: list[str] = USER_SETS) -> dict:
    path = RECIPES / f"{name}.yaml"
    return recipes.resolve(recipes.with_sets(recipes.read_overrides(path), sets), path)


def test_the_recipes_there_are() -> None:
    assert set(recipes.recipe_names(RECIPES)) >= {"offline", *HUB_RECIPES, MIXTURE}


def test_the_mixture_trains_on_spider_and_bird_train_and_tests_on_bird_dev() -> None:
    params = _resolved(MIXTURE, MIXTURE_SETS)
    spider, bird = params["download"].data.sources
    assert (spider.source, spider.path, spider.splits) == ("spider", "/data/spider", ("train",))
    assert (bird.source, bird.path, bird.splits) == ("bird", "/data/bird", None)
    assert params["download"].data.path is None  # the single-source keys keep their defaults
    assert params["tokenize"].split.by == "source" and params["tokenize"].split.ratios.test == 0
    assert params["train"].lora.target_modules == ALL_PROJECTIONS


def test_a_set_into_a_list_needs_an_index_the_list_has() -> None:
    overrides = recipes.read_overrides(RECIPES / f"{MIXTURE}.yaml")
    with pytest.raises(ParamsError, match=r"-S 'download.data.sources.2.path=/x': 2 is not an index of a list of 2"):
        recipes.with_sets(overrides, ["download.data.sources.2.path=/x"])


def test_the_offline_recipe_is_params_yaml() -> None:
    on_file = {s: load_section(s, m, REPO_ROOT / "params.yaml") for s, m in recipes.SECTIONS.items()}
    assert _resolved("offline", []) == on_file


@pytest.mark.parametrize("name", HUB_RECIPES)
def test_hub_recipes_train_lora_on_the_seven_projections(name: str) -> None:
    params = _resolved(name)
    lora = params["train"].lora
    assert lora.target_modules == ALL_PROJECTIONS and lora.modules_to_save == ()
    assert (lora.r, lora.alpha, lora.dropout) == (16, 32.0, 0.05)
    assert params["train"].quantization == "4bit" and params["train"].launch == "gpu"
    assert params["train"].max_steps is None  # epochs, not a step cap
    assert params["tokenize"].split.by == "source" and params["tokenize"].schema_.format == "ddl"
    assert params["eval"].max_examples is None  # the whole official dev set
    assert params["merge"].dtype == "bf16"
    assert params["download"].model.source == "hub"


def test_the_7b_recipe_carries_what_kept_the_7b_from_collapsing() -> None:
    train = _resolved("qwen-coder-7b-bird")["train"]
    assert train.learning_rate == 5e-5 and train.max_grad_norm == 0.5
    assert train.batch_size * train.gradient_accumulation_steps == 32
    assert train.gradient_checkpointing and train.guard.enabled


@pytest.mark.parametrize("name", HUB_RECIPES)
def test_a_hub_recipe_without_a_revision_says_how_to_get_one(name: str) -> None:
    with pytest.raises(ParamsError) as e:
        _resolved(name, sets=USER_SETS[1:])
    assert f"{RECIPES / name}.yaml: download.model: revision is required when source is 'hub'" in str(e.value)
    assert "model_info(" in str(e.value) and ".sha" in str(e.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"train": {"lerning_rate": 1.0}}, "train.lerning_rate: unknown key"),
        ({"train": {"lora": {"rank": 8}}}, "train.lora.rank: unknown key"),
        ({"trian": {"seed": 1}}, "trian: unknown params section"),
        ({"eval": {"max_examples": 0}}, "eval.max_examples: must be > 0, got 0"),
        ({"merge": "bf16"}, "merge: expected a mapping, got 'bf16'"),
    ],
)
def test_a_bad_recipe_key_names_the_file_and_the_key(tmp_path: Path, body: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ParamsError, match=None) as e:
        recipes.resolve(recipes.read_overrides(path), path)
    assert f"{path}: {message}" in str(e.value)


def test_an_unknown_recipe_lists_the_recipes(tmp_path: Path) -> None:
    with pytest.raises(ParamsError) as e:
        recipes.recipe_path("qwen-72b", RECIPES)
    assert "no recipe 'qwen-72b'" in str(e.value)
    assert "offline, qwen-coder-1.5b-spider, qwen-coder-7b-bird" in str(e.value)


@pytest.mark.parametrize("name", ["offline", *HUB_RECIPES, MIXTURE])
def test_run_flags_give_the_experiment_exactly_the_resolved_params(tmp_path: Path, name: str) -> None:
    """DVC's own override parser applies the -S flags to a params.yaml: it then holds the recipe."""
    resolved = _resolved(name, {"offline": [], MIXTURE: MIXTURE_SETS}.get(name, USER_SETS))
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    flags = recipes.set_flags(recipes.dump(resolved))
    assert flags[::2] == ["-S"] * (len(flags) // 2)
    apply_overrides(tmp_path / "params.yaml", flags[1::2])
    applied = {s: load_section(s, m, tmp_path / "params.yaml") for s, m in recipes.SECTIONS.items()}
    assert applied == resolved


def test_recipe_show_prints_the_resolved_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "show", "qwen-coder-1.5b-spider", "--recipes-dir", str(RECIPES)]) == 0
    out, err = capsys.readouterr()
    shown = yaml.safe_load(out)
    assert shown["train"]["lora"]["target_modules"] == list(ALL_PROJECTIONS)
    assert shown["tokenize"]["split"]["by"] == "source" and shown["merge"]["dtype"] == "bf16"
    assert "still to set" in err and "download.model: revision is required" in err


def test_recipe_run_hands_the_resolved_params_to_dvc_exp_run(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["recipe", "run", "qwen-coder-1.5b-spider", "--recipes-dir", str(RECIPES), "--dry-run", "--queue",
            "-n", "spider-1", *(f"-S{s}" for s in USER_SETS), "-S", "train.learning_rate=1.0e-4"]
    assert main(args) == 0
    command = capsys.readouterr().out
    assert command.startswith("dvc exp run -S ")
    assert "-S train.learning_rate=0.0001" in command
    assert """-S 'download.model.revision="0123456789abcdef"'""" in command  # digits stay a string
    assert command.rstrip().endswith("-n spider-1 --queue")


def test_recipe_run_stops_before_dvc_on_an_incomplete_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "run", "qwen-coder-7b-bird", "--recipes-dir", str(RECIPES), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "download.data: path is required when source is 'bird'" in err
