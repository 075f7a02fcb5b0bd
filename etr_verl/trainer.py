"""The ETR trainer: verl's V1 synchronous trainer plus the exact, driver-side macro signal.

Registered as ``trainer.v1.trainer_mode=etr_sync`` (verl's ``register_trainer``), so it also runs under stock
``python -m verl.trainer.main_ppo``. It changes two things, both through verl's extension points:

1. after the workers are built, ``actor_rollout_wg.set_loss_fn(EtrLossFunction(actor_config))`` — verl's own
   ``ppo_loss`` wrapped so the ``etr`` policy loss can see the per-response macro signal (verl's critic is set up
   the same way, with a driver-built config);
2. after verl computes advantages, the variance ratio ``v_g / v_max`` of every response's group is computed from
   the whole batch (all of a group's responses, before any mini/micro-batch or data-parallel split) and written
   to TransferQueue as the field ``etr_group_variance_ratio``, which reaches the workers with the batch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from etr_verl.advantage import check_group_ids, group_index
from etr_verl.config import EtrAlgorithmConfig
from etr_verl.elastic import group_variance_ratio
from etr_verl.policy_loss import MACRO_FIELD, EtrLossFunction

logger = logging.getLogger(__name__)

TRAINER_MODE = "etr_sync"


def macro_signal_from_batch(
    uids: Any, scores: torch.Tensor, response_mask: torch.Tensor, algorithm_config: Any
) -> tuple[torch.Tensor, dict[str, float]]:
    """The per-response macro signal of a whole batch, and the driver's metrics.

    Args:
        uids: ``(bs,)`` group labels (verl's ``uid``).
        scores: ``(bs,)`` outcome scores (``rm_scores`` summed over tokens: before any KL-in-reward penalty).
        response_mask: ``(bs, T)``; responses with an empty mask (verl's padding samples) do not count.
        algorithm_config: the ``algorithm`` config (``algorithm.etr.reward_low/high``).

    Returns:
        ``(bs,)`` fp32 variance ratios, and ``actor/etr/zero_variance_group_share``,
        ``actor/etr/group_variance_ratio_mean`` over the groups with valid responses.
    """
    check_group_ids(uids, scores.shape[0])
    etr_algo = EtrAlgorithmConfig.from_algorithm_config(algorithm_config)
    gidx = group_index(uids)
    valid = response_mask.bool().any(dim=-1)
    ratio = group_variance_ratio(scores, gidx, valid, etr_algo.reward_low, etr_algo.reward_high)
    n_groups = int(gidx.max()) + 1 if gidx.numel() else 0
    present = torch.zeros(n_groups, dtype=torch.bool).index_fill_(0, gidx[valid], True)
    # every response of a group carries the group's ratio, so any one of them may write it
    group_ratio = torch.zeros(n_groups).scatter_(0, gidx[valid], ratio[valid])[present]
    metrics = {
        "actor/etr/zero_variance_group_share": float((group_ratio <= 0).float().mean()) if group_ratio.numel() else 0.0,
        "actor/etr/group_variance_ratio_mean": float(group_ratio.mean()) if group_ratio.numel() else 0.0,
    }
    return ratio, metrics


def install_etr_loss(actor_rollout_wg: Any, config: Any) -> None:
    """Replace the actor workers' ``ppo_loss`` by :class:`EtrLossFunction` (verl's ``set_loss_fn``)."""
    from verl.utils.config import omega_conf_to_dataclass

    if config.get("distillation") is not None and config.distillation.get("enabled", False):
        raise ValueError("the ETR trainer does not support distillation (its loss replaces ppo_loss).")
    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    actor_rollout_wg.set_loss_fn(EtrLossFunction(actor_config))


class EtrTrainerMixin:
    """Adds ETR's loss installation and driver-side macro signal to a verl V1 ``PPOTrainer``."""

    def on_init_end(self) -> None:
        super().on_init_end()
        install_etr_loss(self.actor_rollout_wg, self.config)

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        import transfer_queue as tq

        batch = super()._compute_advantage(batch, metrics)
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "rm_scores", "response_mask"]
        )
        uids = np.array(data["uid"].tolist(), dtype=object) if not isinstance(data["uid"], list) else data["uid"]
        padded = data.select("rm_scores", "response_mask").to_padded_tensor()
        ratio, etr_metrics = macro_signal_from_batch(
            uids, padded["rm_scores"].sum(dim=-1), padded["response_mask"], self.config.algorithm
        )
        metrics.update(etr_metrics)
        return tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict({MACRO_FIELD: ratio.unsqueeze(-1)}, batch_size=len(batch)),  # one (1,) per sample
        )


def register() -> None:
    """Register ``etr_sync`` into verl's V1 trainer registry (idempotent)."""
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    existing = TRAINER_REGISTRY.get(TRAINER_MODE)
    if existing is not None and existing.__module__ == __name__:
        return
    cls = type("EtrPPOTrainerSync", (EtrTrainerMixin, PPOTrainerSync), {"__module__": __name__})
    register_trainer(TRAINER_MODE)(cls)


from etr_verl.registration import register as _register  # noqa: E402  (importing this module registers ETR)

_register(finished=__name__)
