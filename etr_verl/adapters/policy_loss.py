"""``actor.policy_loss.loss_mode=etr``: ETR's elastic clipped policy loss, registered with verl's
``register_policy_loss``.

verl's worker-side ``ppo_loss`` hands a registered policy loss only ``old_log_prob, log_prob, advantages,
response_mask, loss_agg_mode, config, rollout_is_weights``. The macro signal of the driver therefore reaches this
loss through a context variable, set for each micro-batch by the worker's loss function
(:class:`etr_verl.adapters.loss_function.EtrLossFunction`, which reads it from the batch). Without it (stock
trainers) the loss recovers the signal from the advantages
(:func:`etr_verl.elastic.variance_ratio_from_binary_advantages`), which checks its own assumption. With
``etr_budget=preserve`` the driver sends the final factors instead (computed from the whole batch), and the loss
uses them as they are.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from verl.trainer.ppo.core_algos import agg_loss
from verl.utils import torch_functional as verl_F

from etr_verl import elastic
from etr_verl.adapters.loss_config import LOSS_MODE, etr_policy_loss_config

logger = logging.getLogger(__name__)

_driver_variance_ratio: ContextVar[Optional[torch.Tensor]] = ContextVar("etr_driver_variance_ratio", default=None)
_driver_factor: ContextVar[Optional[torch.Tensor]] = ContextVar("etr_driver_factor", default=None)
_fallback_announced = False


@contextmanager
def driver_macro_signal(variance_ratio: Optional[torch.Tensor]) -> Iterator[None]:
    """Make the driver's ``(bs,)`` variance ratios of the current micro-batch visible to the ``etr`` loss."""
    token = _driver_variance_ratio.set(variance_ratio)
    try:
        yield
    finally:
        _driver_variance_ratio.reset(token)


@contextmanager
def driver_budget_factors(factor: Optional[torch.Tensor]) -> Iterator[None]:
    """Make the driver's ``(bs,)`` budget-preserving factors of the current micro-batch visible to the ``etr``
    loss (``etr_budget=preserve``)."""
    token = _driver_factor.set(factor)
    try:
        yield
    finally:
        _driver_factor.reset(token)


def compute_policy_loss_etr(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ETR's elastic clipped policy loss, with verl's ``compute_policy_loss_vanilla`` signature and metrics.

    ``loss = agg_loss(w_it * L_it)`` with ``L_it`` the clipped surrogate of :mod:`etr_verl.elastic` under
    per-response bounds ``[1 - eps_low f_i, 1 + eps_high f_i]``, ``eps_low/high = actor.clip_ratio_low/high``.

    Args:
        old_log_prob: ``(bs, T)`` log-probs under the behaviour policy.
        log_prob: ``(bs, T)`` log-probs under the current policy (carries the gradient).
        advantages: ``(bs, T)`` advantages (outcome advantages: one value per response).
        response_mask: ``(bs, T)`` bool, valid response tokens. Rows may be empty (verl's padding samples).
        loss_agg_mode: verl's aggregation mode.
        config: the actor config (``ActorConfig``); ``config.policy_loss`` is an ``EtrPolicyLossConfig`` or verl's
            plain ``PolicyLossConfig`` (ETR's defaults apply).
        rollout_is_weights: ``(bs, T)`` rollout importance-sampling weights, or None.

    Returns:
        ``(loss, metrics)``: scalar loss; verl's ``actor/pg_clipfrac``, ``actor/ppo_kl``,
        ``actor/pg_clipfrac_lower`` and ETR's ``actor/etr/*``.
    """
    if config is None:
        raise elastic.ETRInputError("the etr policy loss needs the actor config (config=...).")
    etr = etr_policy_loss_config(config.policy_loss)
    coeffs = etr.coefficients
    clip_ratio = config.clip_ratio
    eps_low = config.clip_ratio_low if config.clip_ratio_low is not None else clip_ratio
    eps_high = config.clip_ratio_high if config.clip_ratio_high is not None else clip_ratio
    clip_ratio_c = config.get("clip_ratio_c", 3.0)
    elastic.validate_clip_range(eps_low, eps_high, coeffs.factor_max, prefix="policy_loss.etr_")

    valid_response = elastic.response_has_tokens(response_mask)
    adv_magnitude = elastic.response_advantage_magnitude(advantages, response_mask)
    if coeffs.budget == "preserve":
        variance_ratio, from_driver = None, True
        factor = _budget_factors_from_driver(advantages)
    else:
        variance_ratio, from_driver = _macro_signal(etr, coeffs, advantages, response_mask, config)
        factor = elastic.elastic_factor(adv_magnitude, variance_ratio, coeffs)
    lower, upper = elastic.clip_bounds(factor, eps_low, eps_high, dtype=torch.result_type(log_prob, old_log_prob),
                                       bounds=coeffs.bounds)

    terms = elastic.elastic_clipped_surrogate(old_log_prob, log_prob, advantages, lower, upper, clip_ratio_c)
    pg_losses = terms.pg_losses
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    pg_loss = agg_loss(
        loss_mat=pg_losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )

    per_response = {"factor": factor, "valid": valid_response, "adv_magnitude": adv_magnitude}
    if variance_ratio is not None:
        per_response["variance_ratio"] = variance_ratio
        per_response["macro_weight"] = elastic.macro_weight(variance_ratio, coeffs)  # the math's own formula
    summary = _summarise_on_host(terms, response_mask, pg_loss, per_response)

    # |A_i| is a masked max: NaN/inf exactly when an advantage at a valid token is
    inputs_finite = math.isfinite(summary.log_ratio_checksum) and all(
        map(math.isfinite, summary.per_response["adv_magnitude"])
    )
    non_finite = {}
    if not (inputs_finite and math.isfinite(summary.loss)):
        non_finite = elastic.non_finite_counts(
            {"old_log_prob": old_log_prob, "log_prob": log_prob, "advantages": advantages,
             "rollout_is_weights": rollout_is_weights}, response_mask)
        if not non_finite and not math.isfinite(summary.loss):
            _raise_non_finite_loss(response_mask, loss_agg_mode, config)
    if non_finite:
        pg_loss = _on_non_finite_inputs(etr, non_finite, pg_loss)
    else:
        _reset_non_finite_streak()
    metrics = dict(summary.verl_metrics)
    metrics.update(etr_metrics(
        factor=summary.per_response["factor"], valid=summary.per_response["valid"],
        variance_ratio=summary.per_response.get("variance_ratio"),
        macro_weight=summary.per_response.get("macro_weight"), coeffs=coeffs, eps_low=eps_low,
        eps_high=eps_high, pg_clipfrac=metrics["actor/pg_clipfrac"], clipfrac_negative=summary.clipfrac_negative,
    ))
    if variance_ratio is not None or coeffs.budget == "preserve":  # preserve: the driver's factors hold the macro level
        metrics["actor/etr/macro_from_driver"] = float(from_driver)
    metrics["actor/etr/non_finite_tokens"] = float(sum(non_finite.values()))
    return pg_loss, metrics


_non_finite_streak = 0
"""How many consecutive micro-batches (in this worker) held NaN/inf inputs at valid tokens."""


def _reset_non_finite_streak() -> None:
    global _non_finite_streak
    _non_finite_streak = 0


def _on_non_finite_inputs(etr: Any, counts: dict[str, int], pg_loss: torch.Tensor) -> torch.Tensor:
    """NaN/inf at valid tokens (``counts``: tokens per input). ``etr_on_non_finite=raise``, or more than
    ``etr_max_consecutive_non_finite`` such micro-batches in a row: raise. Otherwise (``skip_update``) log it loudly
    and return a NaN loss, so that verl's optimizer step skips this update exactly as it does for ``vanilla`` (its
    engines drop an update whose gradient norm is not finite): never a NaN update, and the run goes on."""
    global _non_finite_streak
    _non_finite_streak += 1
    where = ", ".join(f"{name}: {n} token(s)" for name, n in counts.items())
    hint = ("Check the reward/advantage pipeline (advantages), the rollout correction (rollout_is_weights) or the "
            "rollout/actor numerics (log-probs).")
    if etr.etr_on_non_finite == "raise":
        raise elastic.ETRInputError(f"NaN/inf at valid response tokens ({where}); policy_loss.etr_on_non_finite="
                                    f"raise. {hint}")
    if _non_finite_streak > etr.etr_max_consecutive_non_finite:
        raise elastic.ETRInputError(
            f"NaN/inf at valid response tokens in {_non_finite_streak} consecutive micro-batches (now: {where}), "
            f"more than policy_loss.etr_max_consecutive_non_finite={etr.etr_max_consecutive_non_finite}: every "
            f"update is being skipped. {hint}"
        )
    logger.warning(
        "ETR: NaN/inf at valid response tokens (%s). This micro-batch's loss is set to NaN, so verl skips this "
        "optimizer step (as for vanilla: 'grad_norm is not finite'); %d consecutive, fatal after %d "
        "(policy_loss.etr_max_consecutive_non_finite; etr_on_non_finite=raise stops at the first). %s",
        where, _non_finite_streak, etr.etr_max_consecutive_non_finite, hint,
    )
    return pg_loss * float("nan")  # keeps the graph and makes the gradient NaN: verl's guard drops the update


@dataclass
class _HostSummary:
    """What the loss reads back from the device for one micro-batch, in one copy (each ``.item()`` is a sync).

    Attributes:
        verl_metrics: ``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower`` with verl's values.
        clipfrac_negative: share of valid tokens clipped where ``A < 0`` (same denominator as ``pg_clipfrac``).
        log_ratio_checksum: :func:`etr_verl.elastic.log_ratio_checksum`.
        loss: the loss value.
        per_response: each ``(bs,)`` tensor given, as a list of floats.
    """

    verl_metrics: dict[str, float]
    clipfrac_negative: float
    log_ratio_checksum: float
    loss: float
    per_response: dict[str, list[float]]


VERL_METRIC_NAMES = ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")


@torch.no_grad()
def _summarise_on_host(
    terms: elastic.SurrogateTerms, response_mask: torch.Tensor, loss: torch.Tensor, per_response: dict
) -> _HostSummary:
    """verl's three metrics with verl's formulas (``compute_policy_loss_vanilla``), ETR's clip count, the
    finiteness screen, the loss and the ``(bs,)`` tensors in ``per_response``: one device-to-host copy.

    The ``(bs, T)`` temporaries are made one at a time and freed before the next, so the peak memory stays
    ``vanilla``'s (which never holds them together).
    """
    n_tokens = response_mask.sum()
    denominator = n_tokens + 1e-8
    clipped = terms.clipped()
    pg_clipfrac = _masked_mean_like_verl(clipped.float(), response_mask, denominator)
    clipped_negative = _count_clipped_at_negative_advantage(clipped, terms.negative, response_mask)
    del clipped
    ppo_kl = _masked_mean_like_verl(-terms.negative_approx_kl, response_mask, denominator)
    pg_clipfrac_lower = _masked_mean_like_verl(terms.dual_clipped().float(), response_mask, denominator)
    # the int64 counts are promoted to the float dtype: exact below 2**24 tokens per micro-batch in fp32
    scalars = torch.stack([pg_clipfrac, ppo_kl, pg_clipfrac_lower, clipped_negative, n_tokens,
                           elastic.log_ratio_checksum(terms.log_ratio), loss.reshape(())])
    host = torch.cat([scalars, *per_response.values()]).tolist()
    verl_values, (clipped_count, token_count, checksum, loss_value) = host[:3], host[3:7]
    rest = iter(host[7:])
    return _HostSummary(
        verl_metrics=dict(zip(VERL_METRIC_NAMES, verl_values)),
        clipfrac_negative=clipped_count / (token_count + 1e-8),
        log_ratio_checksum=checksum,
        loss=loss_value,
        per_response={name: [next(rest) for _ in range(tensor.numel())] for name, tensor in per_response.items()},
    )


def _masked_mean_like_verl(
    values: torch.Tensor, response_mask: torch.Tensor, denominator: torch.Tensor
) -> torch.Tensor:
    """``verl_F.masked_mean(values, response_mask)`` bit for bit, with the mask counted once per micro-batch.

    verl's ``masked_mean`` is ``masked_sum(v, mask) / (mask.sum() + 1e-8)``; ``denominator`` is that
    ``mask.sum() + 1e-8``, shared by the three metrics (a boolean reduction is costly on the CPU). The parity
    tests with ``vanilla`` check the bits.

    Args:
        values, response_mask: ``(bs, T)``; denominator: 0-d.
    """
    return verl_F.masked_sum(values, response_mask) / denominator


def _count_clipped_at_negative_advantage(
    clipped: torch.Tensor, negative: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """0-d int64: valid tokens where the clip is active and ``A < 0``. Consumes ``clipped`` (``(bs, T)`` bool,
    overwritten in place: no temporary of its own)."""
    clipped &= negative
    clipped &= response_mask.bool()
    return clipped.sum()


def _budget_factors_from_driver(advantages: torch.Tensor) -> torch.Tensor:
    """The ``(bs,)`` budget-preserving factors the driver computed from the whole batch (``etr_budget=preserve``)."""
    factor = _driver_factor.get()
    if factor is None:
        raise elastic.ETRInputError(
            "policy_loss.etr_budget=preserve, but no driver-side factors reached the loss: the budget is a statistic "
            "of the whole batch, computed by algorithm.adv_estimator=etr_grpo in the driver and read by ETR's loss "
            "function. Run python -m etr_verl.main with algorithm.adv_estimator=etr_grpo, or set "
            "policy_loss.etr_budget=computed."
        )
    if factor.numel() != advantages.shape[0]:
        raise elastic.ETRInputError(
            f"driver budget factors have {factor.numel()} values for a micro-batch of {advantages.shape[0]}."
        )
    return factor.reshape(-1).to(device=advantages.device, dtype=torch.float32)


def _macro_signal(
    etr: Any, coeffs: elastic.ElasticityCoefficients, advantages: torch.Tensor, response_mask: torch.Tensor, config: Any
) -> tuple[Optional[torch.Tensor], bool]:
    """The ``(bs,)`` variance ratio of each response's group and whether it came from the driver."""
    if not coeffs.macro_on:
        return None, False
    driver = _driver_variance_ratio.get()
    if driver is not None and etr.etr_macro_source != "advantages":
        if driver.numel() != advantages.shape[0]:
            raise elastic.ETRInputError(
                f"driver macro signal has {driver.numel()} values for a micro-batch of {advantages.shape[0]}."
            )
        return driver.reshape(-1).to(device=advantages.device, dtype=torch.float32), True
    if etr.etr_macro_source == "driver":
        raise elastic.ETRInputError(
            "policy_loss.etr_macro_source=driver, but no driver-side group variance reached the loss: ETR's loss "
            "function is not installed in this worker. Run python -m etr_verl.main (it installs it, on every "
            "trainer), or set etr_macro_source=advantages to recover the signal from binary-reward advantages."
        )
    group_size = config.get("rollout_n", None)
    if not isinstance(group_size, int):
        raise elastic.ETRInputError("recovering the macro signal needs actor.rollout_n (responses per prompt).")
    if group_size < 2:  # only the worker sees rollout.n on stock main_ppo: the policy-loss config has no view of it
        raise elastic.ETRInputError(
            f"actor_rollout_ref.rollout.n={group_size} with macro elasticity on (policy_loss.etr_beta="
            f"{etr.etr_beta}): ETR's macro level compares the responses to one prompt, so it needs several. Set "
            "actor_rollout_ref.rollout.n >= 2 (GRPO's group size) or policy_loss.etr_beta=0. (python -m "
            "etr_verl.main refuses this before Ray starts; stock main_ppo reaches it only at the first step.)"
        )
    global _fallback_announced
    if not _fallback_announced:
        _fallback_announced = True
        logger.warning(
            "ETR: no driver-side group variance in this batch; recovering pass rates from std-normalised binary "
            "advantages (group size %d). Exact only for binary outcome rewards; checked on every micro-batch.",
            group_size,
        )
    return elastic.variance_ratio_from_binary_advantages(advantages, response_mask, group_size), False


def etr_metrics(
    factor: list[float],
    valid: list[float],
    variance_ratio: Optional[list[float]],
    macro_weight: Optional[list[float]],
    coeffs: elastic.ElasticityCoefficients,
    eps_low: float,
    eps_high: float,
    pg_clipfrac: float,
    clipfrac_negative: float,
) -> dict[str, float]:
    """ETR's diagnostics of one micro-batch, from per-response values already on the host.

    Computed in Python: the micro-batch has few responses, and a dozen small device kernels would cost more than
    the loss's token-level work at small micro-batches. Response statistics are over non-empty rows (``valid``
    is 1.0 for a row with a valid token); 0 when there is none.

    Args:
        factor: ``bs`` elastic factors ``f_i``; valid: ``bs`` 1.0/0.0; variance_ratio, macro_weight: ``bs``
            ``v_g / v_max`` and ``w_g`` (:func:`etr_verl.elastic.macro_weight`), or None (macro off).
        pg_clipfrac: verl's ``actor/pg_clipfrac``; clipfrac_negative: the part of it at tokens with ``A < 0``
            (a token with ``A = 0`` is never clipped, so the rest is at ``A > 0``).
    """
    rows = [i for i, v in enumerate(valid) if v]
    n_valid = max(len(rows), 1)
    factors = [factor[i] for i in rows] or [0.0]
    stats = {"mean": sum(factors) / n_valid, "min": min(factors), "max": max(factors)}
    metrics = {f"actor/etr/factor_{stat}": value for stat, value in stats.items()}
    for name, eps, moves in (("eps_low", eps_low, coeffs.bounds != "upper"),
                             ("eps_high", eps_high, coeffs.bounds != "lower")):  # a static bound: f = 1
        metrics.update({f"actor/etr/{name}_{stat}": eps * (value if moves else 1.0) for stat, value in stats.items()})
    metrics["actor/etr/share_at_factor_floor"] = sum(factor[i] <= coeffs.factor_min for i in rows) / n_valid
    metrics["actor/etr/share_at_factor_ceiling"] = sum(factor[i] >= coeffs.factor_max for i in rows) / n_valid
    metrics["actor/etr/pg_clipfrac_adv_pos"] = pg_clipfrac - clipfrac_negative
    metrics["actor/etr/pg_clipfrac_adv_neg"] = clipfrac_negative
    if variance_ratio is not None and macro_weight is not None:
        metrics["actor/etr/macro_weight_mean"] = sum(macro_weight[i] for i in rows) / n_valid
        metrics["actor/etr/zero_variance_share"] = sum(variance_ratio[i] <= 0 for i in rows) / n_valid
    return metrics


def _raise_non_finite_loss(response_mask: torch.Tensor, loss_agg_mode: str, config: Any) -> None:
    """The loss is NaN/inf although every input is finite at valid tokens: a configuration error; name it."""
    n_valid = int(response_mask.bool().sum())
    if n_valid == 0:
        raise elastic.ETRInputError(
            f"the etr loss is not finite (loss_agg_mode={loss_agg_mode!r}, no valid token, global batch info="
            f"{dict(config.global_batch_info)}): an all-empty response mask with a locally normalised aggregation "
            "divides by zero; inside verl's trainer the global batch size/token count is set and empty micro-batches "
            "contribute 0."
        )
    raise elastic.ETRInputError(
        f"the etr loss is not finite (loss_agg_mode={loss_agg_mode!r}, {n_valid} valid tokens, global batch info="
        f"{dict(config.global_batch_info)}) although log-probs, advantages and weights are finite at valid tokens: "
        "check the global batch info (batch_num_tokens, global_batch_size, loss_scale_factor)."
    )


def register() -> None:
    """Register ``etr`` into verl's policy-loss registry (idempotent)."""
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, register_policy_loss

    if POLICY_LOSS_REGISTRY.get(LOSS_MODE) is not compute_policy_loss_etr:
        register_policy_loss(LOSS_MODE)(compute_policy_loss_etr)
