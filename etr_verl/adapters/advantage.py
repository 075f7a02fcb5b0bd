"""``algorithm.adv_estimator=etr_grpo``: GRPO's advantages, and ETR's macro signal as the ``returns`` output.

The advantages are computed by verl's own vectorised GRPO estimator, so ``etr_grpo`` and ``grpo_vectorized`` agree
bit for bit. The second output, ``returns``, carries the variance ratio ``v_g / v_max`` of every response's group
(:mod:`etr_verl.adapters.macro_channel`), computed here from whole groups: verl calls estimators in the driver on
the whole batch, before any mini-/micro-batch or data-parallel split, in every trainer (legacy and V1, sync and
async). Input contract, checked before any worker sees the batch: finite outcome scores and one group id per
response.

With ``algorithm.etr.budget_preserving_reading`` set (``policy_loss.etr_budget=preserve``; ``python -m
etr_verl.main`` writes it), ``returns`` carries each response's budget-preserving factor instead, computed here from
the whole batch (:func:`etr_verl.elastic.budget_preserving_factor`).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
from verl.trainer.ppo.core_algos import compute_grpo_vectorized_outcome_advantage
from verl.utils import as_torch_index

from etr_verl.adapters import macro_channel
from etr_verl.adapters.loss_config import EtrAlgorithmConfig
from etr_verl.elastic import (
    ETRInputError,
    budget_preserving_factor,
    group_variance_ratio,
    response_advantage_magnitude,
    response_has_tokens,
)

logger = logging.getLogger(__name__)

ADV_ESTIMATOR = "etr_grpo"


def compute_etr_grpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: Optional[Any] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages ``A_i = (r_i - mean_g) / (std_g + epsilon)`` (or ``r_i - mean_g``) and the macro signal.

    Args:
        token_level_rewards: ``(bs, T)``; the outcome score ``r_i`` of a response is its sum over tokens.
        response_mask: ``(bs, T)``; responses with an empty mask (verl's padding samples) are not counted in any
            group's variance.
        index: ``(bs,)`` group id (verl's ``uid``) of each response.
        epsilon: added to the group std.
        norm_adv_by_std_in_grpo: used only when ``config`` is None; otherwise read from
            ``config.norm_adv_by_std_in_grpo`` (verl does not pass it to registered estimators).
        config: the ``algorithm`` config (``algorithm.etr.reward_low/high``: the range of the outcome scores;
            ``algorithm.etr.budget_preserving_reading``: the loss's coefficients, for ``etr_budget=preserve``).

    Returns:
        ``advantages``: ``(bs, T)``, GRPO's, zero outside the mask. ``returns``: ``(bs, 1)`` fp32,
        ``v_g / v_max`` of the response's group, zero for a response without tokens
        (:func:`etr_verl.adapters.macro_channel.encode`); with a budget-preserving reading, ``-f_i`` there instead
        (:func:`etr_verl.adapters.macro_channel.encode_factors`).
    """
    if config is not None:
        norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True))
        if config.get("use_kl_in_reward", False):
            raise ETRInputError(
                "algorithm.use_kl_in_reward=true: the KL penalty would be part of the outcome scores etr_grpo "
                "computes group variances from. Use actor_rollout_ref.actor.use_kl_loss=true instead."
            )
    batch_size = token_level_rewards.shape[0]
    check_group_ids(index, batch_size)
    scores = token_level_rewards.sum(dim=-1)
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten()[:5].tolist()
        raise ETRInputError(f"outcome scores of responses {rows} are NaN/inf; check the reward function.")
    # the uids factorised once: verl's estimator takes an int64 tensor index as it is (its as_torch_index returns
    # integer tensors unchanged)
    groups = group_ids(index, device=scores.device)
    # verl's estimator reads the rewards only through their sum over tokens: given the sums as (bs, 1) it computes
    # the same scores bit for bit (a sum of one value is that value) without a second pass over the (bs, T) rewards
    advantages, _ = compute_grpo_vectorized_outcome_advantage(
        token_level_rewards=scores.unsqueeze(-1),
        response_mask=response_mask,
        index=groups,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo,
        config=config,
    )
    etr = EtrAlgorithmConfig.from_algorithm_config(config)
    valid = response_has_tokens(response_mask)
    if etr.on_out_of_range == "clamp":
        scores = _clamped_into_range(scores, valid, etr.reward_low, etr.reward_high)
    # a group of one response has variance 0 here; macro elasticity with rollout.n=1 is refused before Ray starts
    variance_ratio = group_variance_ratio(
        scores, groups, valid, etr.reward_low, etr.reward_high, require_group_size_above_one=False,
    )
    reading = etr.budget_preserving_reading
    if reading is None:
        return advantages, macro_channel.encode(variance_ratio, valid)
    adv_magnitude = response_advantage_magnitude(advantages, response_mask)
    informative = valid & (adv_magnitude > 0)  # responses with a learning signal: the budget is theirs
    factor = budget_preserving_factor(adv_magnitude, variance_ratio, informative, reading)
    return advantages, macro_channel.encode_factors(factor, valid)


def _clamped_into_range(scores: torch.Tensor, valid: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``(bs,)`` scores clamped into ``[low, high]`` for the macro signal, with a warning naming how many of the
    valid responses were outside (``algorithm.etr.on_out_of_range=clamp``)."""
    outside = valid & ((scores < low) | (scores > high))
    count = int(outside.sum())
    if count:
        logger.warning(
            "ETR: %d of %d outcome scores lie outside algorithm.etr [reward_low, reward_high] = [%g, %g] (seen: "
            "[%g, %g]); the macro signal uses them clamped into the range, the advantages are unchanged. Set "
            "reward_low/reward_high to your reward's range (or algorithm.etr.on_out_of_range=raise to stop).",
            count, int(valid.sum()), low, high, float(scores[outside].min()), float(scores[outside].max()),
        )
    return scores.clamp(min=low, max=high)


def check_group_ids(index: Any, batch_size: int) -> None:
    """One hashable, non-missing group id per response, or :class:`ETRInputError`."""
    if index is None:
        raise ETRInputError("etr_grpo needs group ids (the batch's 'uid'); none were given.")
    ids = np.asarray(index, dtype=object).reshape(-1)
    if ids.shape[0] != batch_size:
        raise ETRInputError(f"{ids.shape[0]} group ids for {batch_size} responses: one uid per response is needed.")
    if pd.api.types.infer_dtype(ids, skipna=False) == "string":  # verl's uids: all str, so none missing (fast)
        return
    missing = np.flatnonzero(np.equal(ids, None) | np.not_equal(ids, ids))  # None, or NaN (NaN != NaN)
    if missing.size:
        raise ETRInputError(f"responses {missing[:5].tolist()} have no group id (None/NaN uid).")


def group_ids(index: Any, device: torch.device) -> torch.Tensor:
    """``(bs,)`` int64 group ids ``0..G-1`` with the grouping of verl's own ``as_torch_index`` (same group exactly
    when verl's puts two responses in one).

    verl's factorises labels with ``np.unique`` over Python objects, a sort by string comparisons (about 3 ms for
    the 8,192 uuid strings of 512 prompts x 16, as much as the rest of this estimator). For verl's own uids, strings
    that do not all parse as integers, a hash table gives the same groups (labels equal under ``==``) in a fifth of
    that. Every other kind of label goes to verl's function: tensors, integers, strings that all parse as integers
    (verl groups them by value: "7" and "07" together) and mixed types (verl compares them as ``str``).
    """
    if not isinstance(index, torch.Tensor):
        labels = np.asarray(index, dtype=object).reshape(-1)
        if pd.api.types.infer_dtype(labels, skipna=False) == "string" and not _all_parse_as_integers(labels):
            codes, _ = pd.factorize(labels)
            return torch.from_numpy(codes.astype(np.int64, copy=False)).to(device)
    return as_torch_index(index, device=device)


def _all_parse_as_integers(labels: np.ndarray) -> bool:
    """Whether verl's ``as_torch_index`` reads these labels as integers (its ``astype(np.int64)`` succeeds)."""
    try:
        labels.astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def register() -> None:
    """Register ``etr_grpo`` into verl's advantage-estimator registry (idempotent; refuses a foreign owner)."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    existing = ADV_ESTIMATOR_REGISTRY.get(ADV_ESTIMATOR)
    if existing is compute_etr_grpo_advantage:
        return
    if existing is not None and getattr(existing, "__module__", None) != __name__:
        raise ETRInputError(f"advantage estimator {ADV_ESTIMATOR!r} is already registered by {existing!r}.")
    ADV_ESTIMATOR_REGISTRY.pop(ADV_ESTIMATOR, None)  # our own, from a reloaded module
    register_adv_est(ADV_ESTIMATOR)(compute_etr_grpo_advantage)
