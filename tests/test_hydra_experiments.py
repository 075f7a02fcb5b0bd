"""The paper's experiments as Hydra configs (hydra_configs/): every experiment x algorithm x profile composes and
passes verl's validate_config and ETR's checks; a comparison differs by `algo=` alone and a hardware change by
`profile=` alone; every value is documented in place; the entry point finds the configs from a checkout and from
ETR_VERL_HYDRA_CONFIGS (the Docker image's way), and refuses what it cannot find.

The launchers (recipes/*.sh) are tested in test_recipes.py; one experiment's real training step in
test_recipe_real_step.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from etr_testkit import user_env
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from etr_verl.experiment_configs import CONFIGS_ENV, find_experiment_configs, search_path_override
from etr_verl.main import RESOLVED_CONFIG_MARKER, command_line_overrides, run

# the experiments are pinned to the verl their launchers pin (recipes/REQUIRED_VERL.txt): tested there only
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "hydra_configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
PROFILES = sorted(p.stem for p in (CONFIGS / "profile").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (ROOT / "etr_verl" / "hydra_configs" / "algo").glob("*.yaml"))
# what a profile may set: where the run executes and how it fits in memory
SYSTEM_KEYS = re.compile(r"^(trainer\.(nnodes|n_gpus_per_node)|actor_rollout_ref\.rollout\.(name|tensor_model_parallel"
                         r"_size|gpu_memory_utilization|n_gpus_per_node)|actor_rollout_ref\.actor\.(ulysses_sequence_parallel_size|"
                         r"fsdp_config\.(param|optimizer)_offload))$")
# what varies with the algorithm besides the preset's own keys: the run's name and where it saves
RUN_NAME_KEYS = {"algo_name", "trainer.experiment_name", "trainer.default_local_dir",
                 "actor_rollout_ref.rollout.trace.experiment_name"}  # verl interpolates trainer.experiment_name


def composed(*overrides: str):
    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=[*overrides, search_path_override(CONFIGS)])


def flat(config) -> dict[str, object]:
    """Every leaf of a config as ``dotted.key -> value`` (interpolations resolved)."""
    out: dict[str, object] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(config, resolve=True), "")
    return out


def preset_keys(algo: str) -> set[str]:
    """The keys an algorithm preset sets (its YAML, flattened)."""
    text = (ROOT / "etr_verl" / "hydra_configs" / "algo" / f"{algo}.yaml").read_text()
    return set(flat(OmegaConf.create(yaml.safe_load(text))))


def test_the_issue_s_grid_is_there():
    assert {"qwen3_8b_base_dapo17k", "qwen3_8b_base_math", "llama3_1_8b_instruct_dapo17k",
            "llama3_1_8b_instruct_math", "qwen2_5_math_7b_dapo17k", "qwen2_5_math_7b_math"} <= set(EXPERIMENTS)
    assert {"1x8", "4x8", "1x4_offload"} <= set(PROFILES)
    assert {"grpo", "dapo", "etr", "etr_micro", "etr_macro"} <= set(ALGOS)
    assert find_experiment_configs() == CONFIGS  # beside the package of this checkout (an editable install)


def _primary_verl_only(kept_on_other_verls: bool) -> list:
    """The marks of a case of etr-verl's own config grid (experiments x algorithms x profiles), which does not
    change with verl: on verl releases other than the primary, only the cases ``kept_on_other_verls`` run (each
    experiment once, through that release's schema); the primary runs them all."""
    from importlib import metadata

    from etr_verl.verl_support import PRIMARY_VERL_VERSION

    version = metadata.version("verl")
    if version == PRIMARY_VERL_VERSION or kept_on_other_verls:
        return []
    return [pytest.mark.skip(reason=f"verl {version}: etr-verl's own grid once (every case on the primary verl)")]


@pytest.mark.parametrize("experiment, algo, profile", [
    pytest.param(e, a, p, id=f"{e}-{a}-{p}", marks=_primary_verl_only((a, p) == ("etr", "1x8")))
    for e in EXPERIMENTS for a in ALGOS for p in PROFILES])
def test_every_experiment_algo_profile_composes_and_validates(experiment, algo, profile, capsys):
    config = composed(f"experiment={experiment}", f"algo={algo}", f"profile={profile}")
    run(config, dry_run=True)  # etr_verl.main's dry run: resolve, ETR's checks, verl's validate_config; no Ray
    assert "passed every driver-side check" in capsys.readouterr().out
    actor = config.actor_rollout_ref.actor
    assert actor.policy_loss.loss_mode == ("etr" if algo.startswith("etr") else "vanilla")
    assert config.trainer.experiment_name.endswith(f"-{algo}")
    assert config.data.train_batch_size // actor.ppo_mini_batch_size >= 2  # clip bounds can bind
    expected_low = 0.0 if experiment.endswith("_math") else -1.0  # MATH: math_reward 0/1; DAPO-Math-17k: -1/+1
    assert config.algorithm.etr.reward_low == expected_low
    assert config.actor_rollout_ref.rollout.val_kwargs.n == 32
    assert [Path(f).name for f in config.data.val_files] == ["aime24.parquet", "aime25.parquet", "math500.parquet"]
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "etr_verl.plugin"
    expected_nodes = {"4x8": (4, 8), "1x4_offload": (1, 4)}.get(profile, (1, 8))
    assert (config.trainer.nnodes, config.trainer.n_gpus_per_node) == expected_nodes


@pytest.mark.parametrize("experiment", [
    pytest.param(e, marks=_primary_verl_only(e == EXPERIMENTS[0]))
    for e in EXPERIMENTS])
def test_runs_of_a_comparison_differ_only_by_the_algorithm_preset(experiment):
    runs = {algo: flat(composed(f"experiment={experiment}", f"algo={algo}")) for algo in ALGOS}
    all_preset_keys = set().union(*(preset_keys(algo) for algo in ALGOS))
    for algo, values in runs.items():
        alone = flat(composed(f"algo={algo}"))
        for key in preset_keys(algo):  # the experiment never overrides what the preset sets
            assert values[key] == alone[key], (experiment, algo, key)
        for other in runs.values():
            differing = {key for key in values.keys() | other.keys() if values.get(key) != other.get(key)}
            assert differing <= all_preset_keys | RUN_NAME_KEYS, differing - all_preset_keys - RUN_NAME_KEYS


@pytest.mark.parametrize("experiment", ["qwen3_8b_base_dapo17k", "qwen2_5_math_7b_math"])
def test_profiles_change_systems_settings_only(experiment):
    runs = [flat(composed(f"experiment={experiment}", f"profile={profile}")) for profile in PROFILES]
    for values in runs[1:]:
        differing = {key for key in values.keys() | runs[0].keys() if values.get(key) != runs[0].get(key)}
        assert differing and all(SYSTEM_KEYS.match(key) for key in differing), differing


def test_a_math_experiment_is_its_dapo17k_experiment_with_the_other_training_set():
    dapo, math = (flat(composed(f"experiment=qwen3_8b_base_{name}")) for name in ("dapo17k", "math"))
    differing = {key for key in dapo if dapo[key] != math.get(key)}
    assert differing == {"data.train_files", "algorithm.etr.reward_low"} | (RUN_NAME_KEYS - {"algo_name"})


def test_a_hyperparameter_is_one_override_away():
    config = composed("experiment=qwen3_8b_base_dapo17k", "algo=etr", "trainer.nnodes=4",
                      "actor_rollout_ref.actor.optim.lr=5e-7", "paths.data_dir=/shared/data")
    assert config.trainer.nnodes == 4 and config.actor_rollout_ref.actor.optim.lr == 5e-7
    assert config.data.train_files == "/shared/data/dapo_train.parquet"
    assert config.data.val_files[0] == "/shared/data/aime24.parquet"


CONFIG_FILES = sorted(CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_value_is_documented_in_place(path):
    """Each line that sets a value carries a comment, on the line itself or on the line just above it."""
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith("# "), "a header saying what the file is"
    undocumented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")) or stripped.endswith(":") or stripped == "defaults:":
            continue  # comments, list items, parent keys
        if "#" in line:
            continue
        if not lines[number - 1].strip().startswith("#"):
            undocumented.append(f"line {number + 1}: {stripped}")
    assert not undocumented, f"{path.name}: values without a comment: {undocumented}"


def test_provenance_is_marked():
    for name in EXPERIMENTS:
        text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
        assert "[paper]" in text or "_math" in name, name
        assert "[ours]" in text, name


def test_plus_experiment_is_read_as_experiment_and_the_search_path_is_added():
    overrides = command_line_overrides(["--dry-run", "+experiment=qwen3_8b_base_math", "algo=dapo"])
    assert overrides[:2] == ["experiment=qwen3_8b_base_math", "algo=dapo"]
    assert overrides[-1] == f"hydra.searchpath=[pkg://verl.trainer.config,file://{CONFIGS}]"
    mine = ["experiment=x", "hydra.searchpath=[file:///elsewhere]"]
    assert command_line_overrides(mine) == mine  # the user's own search path is left alone


def dry_run_config(*args: str, cwd: Path, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "etr_verl.main", "--dry-run", *args], capture_output=True,
                            text=True, timeout=180, cwd=cwd, env=user_env(**env))
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout.split(RESOLVED_CONFIG_MARKER + "\n", 1)[1])


def test_entry_point_finds_the_experiments_from_anywhere_and_through_the_image_variable(tmp_path):
    config = dry_run_config("+experiment=llama3_1_8b_instruct_dapo17k", "algo=grpo", "profile=4x8", cwd=tmp_path)
    assert config["actor_rollout_ref"]["model"]["path"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert config["trainer"]["nnodes"] == 4 and config["trainer"]["experiment_name"].endswith("-grpo")
    # the image's way: a copy of hydra_configs/ named by ETR_VERL_HYDRA_CONFIGS (here one with an edited value)
    image_configs = tmp_path / "opt" / "hydra_configs"
    shutil.copytree(CONFIGS, image_configs)
    edited = image_configs / "experiment" / "qwen3_8b_base_dapo17k.yaml"
    edited.write_text(edited.read_text().replace("total_training_steps: 300", "total_training_steps: 123"))
    config = dry_run_config("experiment=qwen3_8b_base_dapo17k", cwd=tmp_path, **{CONFIGS_ENV: str(image_configs)})
    assert config["trainer"]["total_training_steps"] == 123


def test_entry_point_errors_name_the_missing_configs(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "etr_verl.main", "--dry-run", "experiment=qwen3_8b_base_dapo17k"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=user_env(**{CONFIGS_ENV: str(tmp_path / "nowhere")}))
    assert bad.returncode != 0 and f"{CONFIGS_ENV}={tmp_path / 'nowhere'}: no experiment/ directory" in bad.stderr
    assert "Traceback" not in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "etr_verl.main", "--dry-run", "experiment=qwen3_8b_dapo17k"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=user_env())
    assert typo.returncode != 0 and "qwen3_8b_dapo17k" in typo.stderr and "Available options" in typo.stderr
