"""Who owns which Ray runtime-env variable, and the check that a submitted job and the trainer never both set one.

Ray refuses a driver's ``ray.init(runtime_env=...)`` that sets an environment variable the submitted job's own
runtime env already sets — even to the same value ("Failed to merge the Job's runtime env ... with a ray.init's
runtime env ... because of a conflict", ``ray/_private/worker.py``). verl's ``run_ppo`` always calls ``ray.init``
with the config's ``ray_kwargs.ray_init.runtime_env`` plus verl's own defaults. So each variable has one owner:

- **the trainer config** (``ray_kwargs.ray_init.runtime_env.env_vars``) owns what the *run* needs however it is
  launched — ``VERL_USE_EXTERNAL_MODULES=etr_verl.plugin`` (``etr_trainer.yaml``) and the local CPU backend's
  variables (``backend/local_cpu.yaml``). ``recipes/train.sh`` on one node, a job on a cluster and a notebook's
  ``etr_verl.main.run`` then load ETR the same way.
- **the job** (``ray job submit --runtime-env``; ``recipes/runtime_env.yaml`` via ``recipes/submit.sh``) owns the
  working directory and what comes from the submitter's shell: secrets and per-submission settings such as
  ``VERL_FILE_LOGGER_PATH``.
- verl's own defaults (``verl.trainer.constants_ppo.get_ppo_ray_runtime_env``) already yield to any variable the
  driver's environment has, except the few verl forwards on every run (its determinism switches).

:func:`reconcile_with_submitted_job` applies the rule in the driver, before ``ray.init``: a variable that a user's
job sets too is left to the job when both values agree (one copy reaches every process), and refused with the key,
both values and the fix named when they differ — instead of Ray's merge error after the job has started.

No ``RAY_OVERRIDE_JOB_RUNTIME_ENV=1``: that switch lets the driver's value silently win over whatever a user put in
the job's runtime env, which is the wrong owner for a user's own settings.

**What the user's shell hands the job** (:data:`FORWARDED_SECRETS`, :data:`FORWARDED_SETTINGS`) reaches it one way
however the job starts. ``recipes/submit.sh`` puts them in the job's runtime env (``ray job submit
--runtime-env``). A driver started from a shell that *joins* a running cluster (``recipes/train.sh`` or
``recipes/eval/evaluate_checkpoint.sh`` on a node where ``ray start`` ran) would otherwise lose them: its workers
are the raylet's children and have the raylet's environment, not the shell's. :func:`forward_to_joined_cluster`
gives that driver the same job-level runtime env, through the variable the job supervisor uses for a submitted
job (Ray merges it into the driver's ``ray.init``), so secrets are not printed by verl's ``ray init kwargs`` line.
"""

from __future__ import annotations

import json
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

# ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR: the job supervisor hands the submitted job's
# config (its runtime env included) to the entrypoint through this variable; ray.init merges it with its own.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
TRAINER_ENV_VARS = "ray_kwargs.ray_init.runtime_env.env_vars"


# what a user's shell hands the job: the secrets are never printed or written to a file of the repository
FORWARDED_SECRETS = ("WANDB_API_KEY", "HF_TOKEN")
# paths among them are the nodes' paths
FORWARDED_SETTINGS = ("VERL_FILE_LOGGER_PATH", "VERL_FILE_LOGGER_ROOT", "TENSORBOARD_DIR", "WANDB_ENTITY", "WANDB_MODE")


def forwarded_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The forwarded secrets and settings that are set (non-empty) in ``environ`` (default: this process's)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in FORWARDED_SECRETS + FORWARDED_SETTINGS if environ.get(name)}


def forward_to_joined_cluster(config: DictConfig, environ: dict[str, str] | None = None) -> list[str]:
    """A driver that joins a running cluster from a shell (not a submitted job): the shell's forwarded variables
    become this job's runtime env, as ``ray job submit`` makes them for recipes/submit.sh. Returns their names."""
    from etr_verl.existing_cluster import joins_existing_cluster

    environ = os.environ if environ is None else environ
    if submitted_job_env_vars(environ) is not None or not joins_existing_cluster(config):
        return []
    env_vars = forwarded_env_vars(environ)
    if env_vars:
        environ[JOB_CONFIG_ENV] = json.dumps({"runtime_env": {"env_vars": env_vars}})
    return sorted(env_vars)


class RuntimeEnvConflict(ValueError):
    """The submitted job's runtime env and the trainer's ``ray.init`` set one variable to different values."""


def submitted_job_env_vars(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The ``env_vars`` of the Ray job this driver runs in (``ray job submit``), or None outside a submitted job."""
    raw = (os.environ if environ is None else environ).get(JOB_CONFIG_ENV)
    if not raw:
        return None
    runtime_env = json.loads(raw).get("runtime_env") or {}
    return {str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}


def _verl_forwarded_env_vars(config: DictConfig) -> set[str]:
    """The variables verl's ``run_ppo`` adds to ``ray.init`` by itself in this driver (its defaults, already
    filtered by verl against the driver's environment, and the ones it forwards on every run)."""
    try:
        from verl.trainer.constants_ppo import get_ppo_ray_runtime_env
    except ImportError:  # a verl without the helper passes nothing of its own
        return set()
    try:
        runtime_env = get_ppo_ray_runtime_env(config)
    except TypeError:  # verl 0.8.0's helper takes no config
        runtime_env = get_ppo_ray_runtime_env()
    return set((runtime_env or {}).get("env_vars") or {})


def reconcile_with_submitted_job(config: DictConfig, environ: dict[str, str] | None = None) -> list[str]:
    """Inside a submitted Ray job: drop from the trainer's ``ray.init`` env vars those the job sets to the same
    value; refuse (:class:`RuntimeEnvConflict`) a variable set to two values, or one that verl itself passes to
    ``ray.init``. Outside a job: nothing to do. Returns the keys left to the job."""
    job_env = submitted_job_env_vars(environ)
    if not job_env:
        return []
    trainer_env: dict[str, Any] = OmegaConf.select(config, TRAINER_ENV_VARS, default=None) or {}
    left_to_job, conflicts = [], []
    for key, value in trainer_env.items():
        if key not in job_env:
            continue
        if str(value) == job_env[key]:
            left_to_job.append(key)
        else:
            conflicts.append(
                f"{key}: the job's runtime env sets {job_env[key]!r}, the trainer config ({TRAINER_ENV_VARS}) "
                f"sets {value!r}. Remove it from the job's env_vars (the config owns it), or set the value you "
                f"want on the command line: {TRAINER_ENV_VARS}.{key}=..."
            )
    verl_owned = sorted((_verl_forwarded_env_vars(config) & set(job_env)) - set(trainer_env))
    conflicts += [
        f"{key}: the job's runtime env sets it, and verl's run_ppo passes it to ray.init itself (from the driver's "
        "environment) — remove it from the job's env_vars" for key in verl_owned
    ]
    if conflicts:
        raise RuntimeEnvConflict(
            "the submitted job's runtime env and this run's ray.init would set the same environment variable, "
            "which Ray refuses:\n  " + "\n  ".join(conflicts)
        )
    if left_to_job:
        with open_dict(config):
            for key in left_to_job:
                del config.ray_kwargs.ray_init.runtime_env.env_vars[key]
    return left_to_job
