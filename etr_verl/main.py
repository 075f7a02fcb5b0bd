"""``python -m etr_verl.main`` (console script ``etr-verl-train``): verl's PPO trainer with ETR, Hydra-configured.

The primary config ``etr_verl/hydra_configs/etr_trainer.yaml`` extends verl's ``ppo_trainer`` with an algorithm
preset (``algo=grpo|dapo|etr|etr_micro|etr_macro``) and a backend (``backend=gpu|local_cpu``). Everything is
validated here, in the driver, before Ray starts: ETR's keys (built through verl's own config dataclasses),
verl's ``validate_config``, and the on-policy trap. Then verl's own ``run_ppo`` runs verl's own V1 trainer.

``--dry-run`` (anywhere on the command line) composes, validates and prints the fully resolved config as YAML,
then exits without starting Ray: ``python -m etr_verl.main --dry-run algo=etr data.train_files=...``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)

DRY_RUN_FLAG = "--dry-run"
RESOLVED_CONFIG_MARKER = "# ---- etr-verl resolved config (YAML) ----"
_dry_run = False  # set by entry() from the command line, before Hydra parses the rest


class OnPolicyClipWarning(UserWarning):
    """Every PPO update is on-policy: no clip bound (static or elastic) can bind."""


def local_backend_env(config: DictConfig) -> dict[str, str]:
    """Environment variables the local CPU backend needs in this process too (Ray inherits them)."""
    env_vars = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    return {str(k): str(v) for k, v in env_vars.items()} if env_vars.get("VERL_PLATFORM") == "cpu" else {}


def check_clipping_can_bind(config: DictConfig) -> bool:
    """Warn (loudly) when one mini-batch and one epoch make every update on-policy: the importance ratio is then
    exactly 1 at every update, no clip bound binds, and ETR, GRPO and DAPO all compute the same update.
    Returns True when clipping can bind."""
    actor = config.actor_rollout_ref.actor
    train_batch, mini_batch, epochs = config.data.train_batch_size, actor.ppo_mini_batch_size, actor.ppo_epochs
    if train_batch <= mini_batch and epochs <= 1:
        warnings.warn(
            f"data.train_batch_size={train_batch} <= actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch} with "
            f"ppo_epochs={epochs}: every update is on-policy (ratio = 1), so no clip bound ever binds and ETR "
            "equals GRPO. Use several mini-batches per step (ppo_mini_batch_size < train_batch_size) or "
            "ppo_epochs > 1.",
            OnPolicyClipWarning,
            stacklevel=2,
        )
        return False
    return True


def validate(config: DictConfig) -> None:
    """All of the driver-side checks, before any Ray process exists. Raises with the bad key named."""
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass

    import etr_verl.plugin  # noqa: F401  (registers ETR in the driver)
    from etr_verl.config import LOSS_MODE, EtrAlgorithmConfig, EtrPolicyLossConfig
    from etr_verl.elastic import validate_clip_range

    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)  # ETR keys: range checks, typos
    EtrAlgorithmConfig.from_algorithm_config(config.algorithm)
    policy_loss = actor_config.policy_loss
    if policy_loss.loss_mode == LOSS_MODE:
        if not isinstance(policy_loss, EtrPolicyLossConfig):
            raise ValueError(
                "loss_mode=etr needs actor_rollout_ref.actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig "
                "in etr_verl.main (the algo=etr preset sets it)."
            )
        validate_clip_range(actor_config.clip_ratio_low, actor_config.clip_ratio_high, policy_loss.etr_factor_max,
                            prefix="policy_loss.etr_")
        if policy_loss.etr_beta > 0 and config.trainer.v1.trainer_mode != "etr_sync":
            logger.warning("macro elasticity without trainer.v1.trainer_mode=etr_sync uses the advantage fallback")
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    check_clipping_can_bind(config)


def run(config: DictConfig, dry_run: bool = False) -> None:
    """Validate, then hand over to verl's own ``run_ppo`` with its V1 task runner (``dry_run``: print the
    resolved config instead)."""
    env = local_backend_env(config)
    os.environ.update(env)  # before Ray starts: the local cluster must bind loopback only
    if env:
        from etr_verl import local_cpu

        local_cpu.activate()
    OmegaConf.resolve(config)
    validate(config)
    if not config.trainer.use_v1:
        raise ValueError("etr_verl.main runs verl's V1 trainer only; remove trainer.use_v1=false.")
    if dry_run:
        print(RESOLVED_CONFIG_MARKER)
        print(OmegaConf.to_yaml(config), end="")
        print("# etr-verl dry run: the config above composed and passed every driver-side check; nothing ran.")
        return
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    run_ppo(config, task_runner_class=TaskRunnerV1)


@hydra.main(config_path="hydra_configs", config_name="etr_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run(config, dry_run=_dry_run)


def entry() -> None:
    """Command-line entry (``python -m etr_verl.main``, ``etr-verl-train``): takes ``--dry-run`` off the argument
    list (Hydra would reject it), then runs the Hydra app."""
    global _dry_run
    _dry_run = DRY_RUN_FLAG in sys.argv[1:]
    sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != DRY_RUN_FLAG]
    main()


if __name__ == "__main__":
    entry()
