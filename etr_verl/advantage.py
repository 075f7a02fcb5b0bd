"""verl adapter for ETR's advantage estimator, registered as ``algorithm.adv_estimator=etr_grpo``.

The advantages are GRPO's, computed by verl's own vectorised estimator (so ``etr_grpo`` and
``grpo_vectorized`` agree bit for bit); what ``etr_grpo`` adds is the input contract ETR relies on, checked in the
driver before any worker sees the batch: finite outcome scores and one group id per response. The per-group
macro signal is computed beside it by the ETR trainer (:mod:`etr_verl.trainer`), from the same whole groups.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from verl.trainer.ppo.core_algos import compute_grpo_vectorized_outcome_advantage

from etr_verl.elastic import ETRInputError

ADV_ESTIMATOR = "etr_grpo"


def compute_etr_grpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: Optional[Any] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO outcome advantages ``A_i = (r_i - mean_g) / (std_g + epsilon)`` (or ``r_i - mean_g``), vectorised.

    Args:
        token_level_rewards: ``(bs, T)``; the outcome score of a response is its sum over tokens.
        response_mask: ``(bs, T)``.
        index: ``(bs,)`` group id (verl's ``uid``) of each response.
        epsilon: added to the group std.
        norm_adv_by_std_in_grpo: used only when ``config`` is None; otherwise read from
            ``config.norm_adv_by_std_in_grpo`` (verl does not pass it to registered estimators).
        config: the ``algorithm`` config.

    Returns:
        ``(advantages, returns)``, both ``(bs, T)``, equal, zero outside the mask.
    """
    if config is not None:
        norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True))
    batch_size = token_level_rewards.shape[0]
    check_group_ids(index, batch_size)
    scores = token_level_rewards.sum(dim=-1)
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten()[:5].tolist()
        raise ETRInputError(f"outcome scores of responses {rows} are NaN/inf; check the reward function.")
    return compute_grpo_vectorized_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo,
        config=config,
    )


def check_group_ids(index: Any, batch_size: int) -> None:
    """One hashable, non-missing group id per response, or :class:`ETRInputError`."""
    if index is None:
        raise ETRInputError("etr_grpo needs group ids (the batch's 'uid'); none were given.")
    ids = np.asarray(index, dtype=object).reshape(-1)
    if ids.shape[0] != batch_size:
        raise ETRInputError(f"{ids.shape[0]} group ids for {batch_size} responses: one uid per response is needed.")
    missing = np.flatnonzero(np.equal(ids, None) | np.not_equal(ids, ids))  # None, or NaN (NaN != NaN)
    if missing.size:
        raise ETRInputError(f"responses {missing[:5].tolist()} have no group id (None/NaN uid).")


def group_index(index: Any) -> torch.Tensor:
    """Dense ``(bs,)`` int64 group ids ``0..G-1`` from verl's uid labels."""
    _, dense = np.unique(np.asarray(index, dtype=object).astype(str), return_inverse=True)
    return torch.as_tensor(dense.reshape(-1), dtype=torch.long)


def register() -> None:
    """Register ``etr_grpo`` into verl's advantage-estimator registry (idempotent)."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    existing = ADV_ESTIMATOR_REGISTRY.get(ADV_ESTIMATOR)
    if existing is compute_etr_grpo_advantage:
        return
    if existing is not None and getattr(existing, "__module__", None) != __name__:
        raise ETRInputError(f"advantage estimator {ADV_ESTIMATOR!r} is already registered by {existing!r}.")
    ADV_ESTIMATOR_REGISTRY.pop(ADV_ESTIMATOR, None)  # our own, from a reloaded module
    register_adv_est(ADV_ESTIMATOR)(compute_etr_grpo_advantage)


from etr_verl.registration import register as _register  # noqa: E402  (importing this module registers ETR)

_register(finished=__name__)
