"""The driver-side checks of ``python -m etr_verl.main``: everything that can be known before Ray starts.

:func:`validate` builds the actor config through verl's own dataclasses (ETR's range checks, mis-spelled keys),
checks the trainer mode and the set-ups ETR's exact macro signal cannot serve (each refused with the fix named),
warns about the set-ups that work but change what ETR does, then runs verl's own ``validate_config``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)


class OnPolicyClipWarning(UserWarning):
    """Every PPO update is on-policy: no clip bound (static or elastic) can bind."""


class AdvantageScaleWarning(UserWarning):
    """ETR's micro level meets advantages of another scale than GRPO's std-normalised ones."""


GRPO_SCALE_ESTIMATORS = ("etr_grpo", "grpo", "grpo_vectorized")


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
    """All of the driver-side checks, before any Ray process exists. Raises with the bad key named.

    Resolves ``policy_loss.etr_macro_source=auto`` in ``config`` (to ``driver`` with ``etr_grpo``, else
    ``advantages``), so the workers and the printed config say which path the run takes.
    """
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass

    import etr_verl.plugin  # noqa: F401  (registers ETR in the driver)
    from etr_verl.config import LOSS_MODE, EtrAlgorithmConfig, EtrPolicyLossConfig

    check_trainer_mode(config)
    check_separate_async(config)
    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)  # ETR keys: range checks, typos
    clip_ratio_c = actor_config.get("clip_ratio_c", 3.0)
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:  # verl's losses assert it at the first update
        raise ValueError(
            f"actor_rollout_ref.actor.clip_ratio_c={clip_ratio_c!r}: the dual-clip bound must be > 1 (verl's "
            "default is 3.0)."
        )
    driver_reading = EtrAlgorithmConfig.from_algorithm_config(config.algorithm).budget_preserving_reading
    policy_loss = actor_config.policy_loss
    preserving = policy_loss.loss_mode == LOSS_MODE and getattr(policy_loss, "etr_budget", None) == "preserve"
    if driver_reading is not None and not preserving:
        raise ValueError(
            "algorithm.etr.budget_preserving_reading is set, but the loss is not ETR with "
            "policy_loss.etr_budget=preserve: etr_grpo would send budget-preserving factors no loss reads. Remove "
            "the key (python -m etr_verl.main writes it from policy_loss.etr_budget=preserve)."
        )
    if policy_loss.loss_mode == LOSS_MODE:
        if not isinstance(policy_loss, EtrPolicyLossConfig):
            raise ValueError(
                "loss_mode=etr needs actor_rollout_ref.actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig "
                "in etr_verl.main (the algo=etr preset sets it)."
            )
        check_etr_setup(config, actor_config, policy_loss, driver_reading)
    elif config.algorithm.adv_estimator == "etr_grpo":
        check_macro_channel_is_free(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    check_clipping_can_bind(config)


def check_trainer_mode(config: DictConfig) -> None:
    """``trainer.v1.trainer_mode`` names a registered V1 trainer (when the V1 trainer is used)."""
    if not config.trainer.get("use_v1", False):
        return
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

    mode = config.trainer.v1.trainer_mode
    if mode in TRAINER_REGISTRY:
        return
    hint = (" etr_sync no longer exists: ETR runs on verl's own trainers; use trainer.v1.trainer_mode=sync."
            if mode == "etr_sync" else "")
    known = sorted(TRAINER_REGISTRY)
    raise ValueError(f"trainer.v1.trainer_mode={mode!r} is not one of verl's trainers {known}.{hint}")


def check_separate_async(config: DictConfig) -> None:
    """``trainer.v1.trainer_mode=separate_async`` rolls out on GPUs of its own: the settings verl's
    ``PPOTrainerSeparateAsync`` asserts when Ray has already started, checked here, all named at once."""
    if not config.trainer.get("use_v1", False) or config.trainer.v1.trainer_mode != "separate_async":
        return
    rollout = config.actor_rollout_ref.rollout
    problems = []
    sync_step = OmegaConf.select(config, "trainer.v1.separate_async.parameter_sync_step", default=None)
    mini_batch = config.actor_rollout_ref.actor.ppo_mini_batch_size
    if sync_step is not None and config.data.train_batch_size != sync_step * mini_batch:
        problems.append(f"data.train_batch_size={config.data.train_batch_size} must equal "
                        f"trainer.v1.separate_async.parameter_sync_step ({sync_step}) x "
                        f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini_batch})")
    for key in ("nnodes", "n_gpus_per_node"):
        if not (rollout.get(key) or 0) > 0:
            problems.append(f"actor_rollout_ref.rollout.{key}={rollout.get(key)!r} must be > 0 (the rollout's own "
                            "GPUs, besides trainer.nnodes x trainer.n_gpus_per_node)")
    backend = OmegaConf.select(rollout, "checkpoint_engine.backend", default=None)
    if backend == "naive":
        problems.append("actor_rollout_ref.rollout.checkpoint_engine.backend=naive cannot sync weights across "
                        "separate GPUs: set it to nccl (or nixl, mooncake)")
    if problems:
        raise ValueError("trainer.v1.trainer_mode=separate_async needs: " + "; ".join(problems) + ".")


def check_etr_setup(config: DictConfig, actor_config: Any, policy_loss: Any, driver_reading: Any = None) -> None:
    """The set-ups the ``etr`` loss cannot serve, refused with the fix; ``etr_macro_source=auto`` resolved."""
    from etr_verl.adapters.loss_function import refuse_distillation
    from etr_verl.elastic import validate_clip_range

    eps_low = actor_config.clip_ratio_low if actor_config.clip_ratio_low is not None else actor_config.clip_ratio
    eps_high = actor_config.clip_ratio_high if actor_config.clip_ratio_high is not None else actor_config.clip_ratio
    validate_clip_range(eps_low, eps_high, policy_loss.etr_factor_max, prefix="policy_loss.etr_")
    refuse_distillation(config)
    warn_about_advantage_scale(config, policy_loss)
    if policy_loss.etr_budget == "preserve":
        write_budget_preserving_reading(config, policy_loss, driver_reading)
    if not policy_loss.coefficients.macro_on:
        return
    group_size = config.actor_rollout_ref.rollout.n
    if group_size < 2:
        raise ValueError(
            f"actor_rollout_ref.rollout.n={group_size} with macro elasticity on (policy_loss.etr_beta="
            f"{policy_loss.etr_beta}): the macro level needs the outcome variance of a group of responses. Sample "
            "several responses per prompt (rollout.n > 1) or set policy_loss.etr_beta=0."
        )
    estimator = config.algorithm.adv_estimator
    source = policy_loss.etr_macro_source
    if source == "auto":
        source = "driver" if estimator == "etr_grpo" else "advantages"
        config.actor_rollout_ref.actor.policy_loss.etr_macro_source = source
        if source == "advantages":
            logger.warning(
                "ETR: algorithm.adv_estimator=%s, so the macro signal is recovered from binary-reward advantages "
                "(policy_loss.etr_macro_source=advantages). Use algorithm.adv_estimator=etr_grpo for the exact "
                "signal.", estimator)
    if source == "driver":
        if estimator != "etr_grpo":
            raise ValueError(
                f"policy_loss.etr_macro_source=driver needs algorithm.adv_estimator=etr_grpo (it computes the macro "
                f"signal from whole groups); found {estimator!r}. Set algorithm.adv_estimator=etr_grpo, or "
                "etr_macro_source=advantages."
            )
        check_macro_channel_is_free(config)


def write_budget_preserving_reading(config: DictConfig, policy_loss: Any, present: Any = None) -> None:
    """``etr_budget=preserve``: the budget is a statistic of the whole batch, computed by ``etr_grpo`` in the driver,
    which verl hands the ``algorithm`` block only; copy the loss's coefficients to
    ``algorithm.etr.budget_preserving_reading``. ``present``: the copy already there (parsed by :func:`validate`),
    which must agree."""
    from omegaconf import OmegaConf, open_dict

    from etr_verl.config import driver_copy_of_reading

    estimator = config.algorithm.adv_estimator
    if estimator != "etr_grpo":
        raise ValueError(
            f"policy_loss.etr_budget=preserve with algorithm.adv_estimator={estimator!r}: the budget-preserving scale "
            "is a statistic of the whole batch, computed by the etr_grpo estimator in the driver. Set "
            "algorithm.adv_estimator=etr_grpo, or policy_loss.etr_budget=computed."
        )
    if policy_loss.etr_macro_source == "advantages":
        raise ValueError(
            "policy_loss.etr_budget=preserve with policy_loss.etr_macro_source=advantages: the budget-preserving "
            "factors come from the driver. Set etr_macro_source=driver (or auto)."
        )
    check_macro_channel_is_free(config)
    coefficients = policy_loss.coefficients
    if present is not None and present != coefficients:
        raise ValueError(
            f"algorithm.etr.budget_preserving_reading={present} disagrees with the loss's keys ({coefficients}): "
            "remove it; python -m etr_verl.main writes it from actor_rollout_ref.actor.policy_loss."
        )
    with open_dict(config.algorithm):
        if config.algorithm.get("etr") is None:
            config.algorithm.etr = OmegaConf.create({})
        with open_dict(config.algorithm.etr):
            config.algorithm.etr.budget_preserving_reading = driver_copy_of_reading(coefficients)


def warn_about_advantage_scale(config: DictConfig, policy_loss: Any) -> None:
    """ETR's defaults assume GRPO's std-normalised advantages (``|A_i|`` around 1); say what changes otherwise."""
    if not policy_loss.coefficients.micro_on:
        return
    estimator = config.algorithm.adv_estimator
    if estimator not in GRPO_SCALE_ESTIMATORS:
        warnings.warn(
            f"loss_mode=etr with algorithm.adv_estimator={estimator}: ETR's micro level scales each response's clip "
            "range with |A_i|, and its defaults assume GRPO's std-normalised advantages (|A_i| around 1). Other "
            "estimators' advantages have other scales, so many factors may sit at etr_factor_min/max. Watch "
            "actor/etr/share_at_factor_floor, or set etr_adv_min/etr_adv_max/etr_alpha for this estimator.",
            AdvantageScaleWarning, stacklevel=2)
    elif not config.algorithm.get("norm_adv_by_std_in_grpo", True):
        warnings.warn(
            "loss_mode=etr with algorithm.norm_adv_by_std_in_grpo=false (Dr.GRPO): |A_i| = |r_i - mean_g| is at most "
            "the reward range, not std-normalised, so the micro factor is smaller than with GRPO (more responses at "
            "etr_factor_min), and the macro fallback (etr_macro_source=advantages) cannot recover pass rates.",
            AdvantageScaleWarning, stacklevel=2)


def check_macro_channel_is_free(config: DictConfig) -> None:
    """``etr_grpo`` writes the macro signal to the batch's ``returns`` (:mod:`etr_verl.adapters.macro_channel`):
    refuse the set-ups that read ``returns`` as returns, or change the outcome scores it is computed from."""
    from verl.trainer.ppo.utils import need_critic

    with warnings.catch_warnings():  # verl's "Disabled critic" notice: its own validate_config prints it once
        warnings.simplefilter("ignore", UserWarning)
        critic = need_critic(config)
    if critic:
        raise ValueError(
            "algorithm.adv_estimator=etr_grpo carries ETR's macro signal in the batch's 'returns', which a critic "
            "would be trained on. ETR is critic-free: set critic.enable=false."
        )
    if config.algorithm.get("use_kl_in_reward", False):
        raise ValueError(
            "algorithm.use_kl_in_reward=true with algorithm.adv_estimator=etr_grpo: the KL penalty would enter the "
            "outcome scores the macro signal is computed from. Use actor_rollout_ref.actor.use_kl_loss=true instead."
        )


def check_logger_credentials(config: DictConfig) -> None:
    """``trainer.logger`` with wandb needs a W&B key in this environment (``WANDB_API_KEY``, or ``wandb login``'s
    ``~/.netrc`` entry), else verl's tracker fails once Ray and the workers are up."""
    import netrc
    import os

    if "wandb" not in list(config.trainer.get("logger") or []):
        return
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise RuntimeError(
        "trainer.logger includes wandb but this environment has no W&B key: export WANDB_API_KEY (never in a config "
        "or on the command line; recipes/submit.sh passes it to the job), run `wandb login`, set WANDB_MODE=offline, "
        "or log elsewhere: trainer.logger=[console,tensorboard]."
    )
