"""One owner per Ray runtime-env variable: a job submitted with recipes/runtime_env.yaml and the trainer's own
``ray.init`` never set the same variable (Ray refuses the job in ``ray.init`` when they do), and a user's own job
runtime env that clashes with the run is named before Ray starts. The live submission is tests/test_cluster_submit.py."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from etr_verl.ray_runtime_env import (
    JOB_CONFIG_ENV,
    TRAINER_ENV_VARS,
    RuntimeEnvConflict,
    reconcile_with_submitted_job,
    submitted_job_env_vars,
)

ROOT = Path(__file__).resolve().parents[1]
JOB_RUNTIME_ENV = yaml.safe_load((ROOT / "recipes" / "runtime_env.yaml").read_text())
BACKENDS = [b.stem for b in (ROOT / "etr_verl" / "hydra_configs" / "backend").glob("*.yaml")]
EXPERIMENTS = [e.stem for e in (ROOT / "hydra_configs" / "experiment").glob("*.yaml")]


def _compose(overrides):
    from etr_verl.experiment_configs import with_experiment_search_path

    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=with_experiment_search_path(overrides))


def _job(env_vars: dict) -> dict[str, str]:
    """The environment ``ray job submit`` gives its entrypoint: the job's config as JSON (what ray.init merges)."""
    return {JOB_CONFIG_ENV: json.dumps({"runtime_env": {"working_dir": "/tmp/x", "env_vars": env_vars}})}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_the_recipe_job_and_the_trainer_config_share_no_variable(backend, experiment):
    config = _compose([f"backend={backend}", *([f"experiment={experiment}"] if experiment else [])])
    trainer_keys = set(OmegaConf.select(config, TRAINER_ENV_VARS) or {})
    assert "VERL_USE_EXTERNAL_MODULES" in trainer_keys  # the config owns ETR's loading, on every launch path
    assert not trainer_keys & set(JOB_RUNTIME_ENV.get("env_vars") or {})


def test_outside_a_submitted_job_nothing_changes():
    config = _compose(["backend=local_cpu"])
    before = OmegaConf.to_container(config)
    assert submitted_job_env_vars({}) is None
    assert reconcile_with_submitted_job(config, environ={}) == []
    assert OmegaConf.to_container(config) == before


def test_a_variable_the_job_sets_to_the_same_value_is_left_to_the_job():
    config = _compose(["backend=local_cpu"])
    left = reconcile_with_submitted_job(
        config, environ=_job({"VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin", "TOKENIZERS_PARALLELISM": "false",
                              "WANDB_API_KEY": "k"}))
    assert sorted(left) == ["TOKENIZERS_PARALLELISM", "VERL_USE_EXTERNAL_MODULES"]
    env_vars = OmegaConf.select(config, TRAINER_ENV_VARS)
    assert "VERL_USE_EXTERNAL_MODULES" not in env_vars and env_vars.VERL_PLATFORM == "cpu"


def test_a_variable_set_to_two_values_is_named_with_the_fix():
    config = _compose(["backend=local_cpu"])
    with pytest.raises(RuntimeEnvConflict) as error:
        reconcile_with_submitted_job(config, environ=_job({"TOKENIZERS_PARALLELISM": "true"}))
    message = str(error.value)
    assert "TOKENIZERS_PARALLELISM: the job's runtime env sets 'true'" in message and "sets 'false'" in message
    assert f"{TRAINER_ENV_VARS}.TOKENIZERS_PARALLELISM=" in message


def _verl_passes_to_ray_init(config) -> set[str]:
    """What this verl's ``get_ppo_ray_runtime_env`` hands ``ray.init`` in the current environment (0.9 takes the
    config and forwards its determinism switches on every run; 0.8.0 takes nothing and forwards none)."""
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    takes_config = bool(inspect.signature(get_ppo_ray_runtime_env).parameters)
    return set(get_ppo_ray_runtime_env(*([config] if takes_config else []))["env_vars"])


def test_a_variable_verl_forwards_itself_is_refused_before_ray(monkeypatch):
    """verl 0.9's run_ppo passes its determinism switches to ray.init on every run: a job must not set them. On a
    verl that does not (0.8.0 drops its defaults that the driver's environment already has), the job may."""
    monkeypatch.setenv("VERL_FULL_DETERMINISM", "1")  # a submitted job's env_vars are in its driver's environment
    config = _compose(["backend=gpu"])
    job = _job({"VERL_FULL_DETERMINISM": "1"})
    if "VERL_FULL_DETERMINISM" in _verl_passes_to_ray_init(config):
        with pytest.raises(RuntimeEnvConflict, match="VERL_FULL_DETERMINISM: the job's runtime env sets it, and verl"):
            reconcile_with_submitted_job(config, environ=job)
    else:
        assert reconcile_with_submitted_job(config, environ=job) == []
