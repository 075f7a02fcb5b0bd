"""``python -m etr_verl.main`` (console script ``etr-verl-train``): verl's PPO trainers with ETR, Hydra-configured.

The primary config ``etr_verl/hydra_configs/etr_trainer.yaml`` extends verl's ``ppo_trainer`` with an algorithm
preset (``algo=grpo|dapo|etr|etr_micro|etr_macro``) and a backend (``backend=gpu|local_cpu``). Everything is
validated in the driver, before Ray starts (:mod:`etr_verl.validation`). Then verl's own ``run_ppo`` runs verl's
own trainer — the legacy ``RayPPOTrainer`` with ``trainer.use_v1=false``, else the V1 trainer in the user's
``trainer.v1.trainer_mode`` — through a task runner that installs ETR's loss function
(:mod:`etr_verl.adapters.task_runners`).

``--dry-run`` (anywhere on the command line) composes, validates and prints the fully resolved config as YAML,
then exits without starting Ray: ``python -m etr_verl.main --dry-run algo=etr data.train_files=...``.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from etr_verl.validation import validate

logger = logging.getLogger(__name__)

DRY_RUN_FLAG = "--dry-run"
RESOLVED_CONFIG_MARKER = "# ---- etr-verl resolved config (YAML) ----"
_dry_run = False  # set by entry() from the command line, before Hydra parses the rest


def local_backend_env(config: DictConfig) -> dict[str, str]:
    """Environment variables the local CPU backend needs in this process too (Ray inherits them)."""
    env_vars = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    return {str(k): str(v) for k, v in env_vars.items()} if env_vars.get("VERL_PLATFORM") == "cpu" else {}


LOOPBACK_RAY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""``0`` makes Ray bind its servers to loopback only; Ray reads it once, when it is first imported."""
LOCAL_BACKEND_ARGS = ("backend=local_cpu", "+backend=local_cpu", "++backend=local_cpu")


def keep_local_ray_on_loopback(argv: list[str]) -> None:
    """``backend=local_cpu`` promises a Ray cluster on loopback only. Ray reads :data:`LOOPBACK_RAY_ENV` when it is
    first imported, and Hydra imports verl (hence Ray) while it searches ``pkg://verl.trainer.config``, so the
    variable is set here, from the command line, before Hydra runs — whatever the caller exported."""
    if any(arg in LOCAL_BACKEND_ARGS for arg in argv):
        os.environ[LOOPBACK_RAY_ENV] = "0"


def check_ray_will_bind_loopback() -> None:
    """For the local backend: refuse to start Ray when it was already imported in cluster mode (it would listen on
    every interface), e.g. ``run()`` called from a program that imported Ray first."""
    os.environ[LOOPBACK_RAY_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        raise RuntimeError(
            f"backend=local_cpu runs Ray on loopback only, but Ray was imported before {LOOPBACK_RAY_ENV}=0 was "
            "set and would listen on every interface. Start with `python -m etr_verl.main backend=local_cpu ...`, "
            f"or export {LOOPBACK_RAY_ENV}=0 before anything imports Ray."
        )


def run(config: DictConfig, dry_run: bool = False) -> None:
    """Validate, then hand over to verl's own ``run_ppo`` with a task runner that installs ETR's loss function
    (``dry_run``: print the resolved config instead)."""
    env = local_backend_env(config)
    if env:
        check_ray_will_bind_loopback()
    os.environ.update(env)  # the local backend's variables, inherited by Ray's processes
    if env:
        from etr_verl import local_cpu

        local_cpu.activate()
    OmegaConf.resolve(config)
    validate(config)
    if dry_run:
        print(RESOLVED_CONFIG_MARKER)
        print(OmegaConf.to_yaml(config), end="")
        print("# etr-verl dry run: the config above composed and passed every driver-side check; nothing ran.")
        return
    from verl.trainer.main_ppo import run_ppo

    from etr_verl.adapters.task_runners import task_runner_class

    run_ppo(config, task_runner_class=task_runner_class(config))


@hydra.main(config_path="hydra_configs", config_name="etr_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run(config, dry_run=_dry_run)


def entry() -> None:
    """Command-line entry (``python -m etr_verl.main``, ``etr-verl-train``): takes ``--dry-run`` off the argument
    list (Hydra would reject it), then runs the Hydra app."""
    global _dry_run
    keep_local_ray_on_loopback(sys.argv[1:])
    _dry_run = DRY_RUN_FLAG in sys.argv[1:]
    sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != DRY_RUN_FLAG]
    main()


if __name__ == "__main__":
    entry()
