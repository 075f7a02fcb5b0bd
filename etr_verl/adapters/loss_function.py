"""The actor worker's loss function for ETR: verl's own ``ppo_loss``, with the macro signal made visible.

verl's actor worker calls ``loss_fn(model_output=..., data=micro_batch, dp_group=...)``; by default ``loss_fn`` is
``partial(ppo_loss, config=actor_config)``, and verl's ``set_loss_fn`` replaces it. :class:`EtrLossFunction` reads
the driver's per-response signal from the micro-batch (:mod:`etr_verl.adapters.macro_channel`: the variance
ratios, or with ``etr_budget=preserve`` the final factors), then calls verl's ``ppo_loss`` unchanged inside
:func:`etr_verl.adapters.policy_loss.driver_macro_signal` (or ``driver_budget_factors``), where the ``etr`` policy
loss picks it up. Where it is installed: :mod:`etr_verl.adapters.task_runners` (V1 trainers, from the
driver) and :mod:`etr_verl.adapters.actor_worker` (the legacy trainer, inside the worker).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from etr_verl.adapters import macro_channel
from etr_verl.adapters.loss_config import LOSS_MODE, etr_policy_loss_config
from etr_verl.adapters.policy_loss import driver_budget_factors, driver_macro_signal


class EtrLossFunction:
    """Worker-side loss for verl's ``set_loss_fn``: verl's ``ppo_loss`` with the driver's macro signal visible.

    Picklable (the V1 trainers send it from the driver to every actor worker); holds the actor config dataclass,
    as verl's own ``partial(ppo_loss, config=actor_config)`` does.

    Args:
        actor_config: the actor config dataclass (``omega_conf_to_dataclass(actor_rollout_ref.actor)``).
        channel: what to read from the batch: ``macro_channel.VARIANCE_RATIO`` (``etr_macro_source=driver``),
            ``macro_channel.FACTOR`` (``etr_budget=preserve``) or None: the loss then runs exactly as ``ppo_loss``
            (the ``etr`` loss recovers the macro signal from the advantages).
    """

    def __init__(self, actor_config: Any, channel: Optional[str]):
        self.config = actor_config
        self.channel = channel

    def __call__(self, model_output: Any, data: Any, dp_group: Any = None) -> tuple[torch.Tensor, dict]:
        from verl.workers.utils.losses import ppo_loss

        if self.channel == macro_channel.FACTOR:
            factor_max = self.config.policy_loss.etr_factor_max
            with driver_budget_factors(macro_channel.read(data, macro_channel.FACTOR, factor_max)):
                return ppo_loss(self.config, model_output, data, dp_group)
        variance_ratio = macro_channel.read(data) if self.channel == macro_channel.VARIANCE_RATIO else None
        with driver_macro_signal(variance_ratio):
            return ppo_loss(self.config, model_output, data, dp_group)


def etr_loss_function(actor_config: Any) -> Optional[EtrLossFunction]:
    """ETR's worker loss function for an actor config (a DictConfig or verl's dataclass), or None when the run does
    not use the ``etr`` loss (verl's own ``ppo_loss`` then stays in place).

    Raises ``ValueError`` for distillation, whose loss function ETR's would replace.
    """
    from omegaconf import DictConfig
    from verl.utils.config import omega_conf_to_dataclass

    if isinstance(actor_config, DictConfig):
        actor_config = omega_conf_to_dataclass(actor_config)
    if actor_config.policy_loss.loss_mode != LOSS_MODE:
        return None
    etr = etr_policy_loss_config(actor_config.policy_loss)
    if etr.etr_budget == "preserve":
        return EtrLossFunction(actor_config, channel=macro_channel.FACTOR)
    read_ratios = etr.coefficients.macro_on and etr.etr_macro_source == "driver"
    return EtrLossFunction(actor_config, channel=macro_channel.VARIANCE_RATIO if read_ratios else None)


def refuse_distillation(config: Any) -> None:
    """ETR's loss function replaces ``ppo_loss``; verl's distillation installs a loss of its own."""
    distillation = config.get("distillation") if hasattr(config, "get") else None
    if distillation is not None and distillation.get("enabled", False):
        raise ValueError(
            "loss_mode=etr with distillation.enabled=true: ETR's loss function would replace verl's distillation "
            "loss. Disable one of them."
        )
