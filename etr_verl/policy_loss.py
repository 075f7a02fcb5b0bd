"""verl adapter for the ETR policy loss: ``@register_policy_loss("etr")`` and the worker-side loss function.

verl's worker-side ``verl.workers.utils.losses.ppo_loss`` hands a registered policy loss only
``old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights`` — it drops every
other batch key. The driver's per-group macro signal therefore travels as the batch field
``etr_group_variance_ratio`` and is exposed to the policy loss by :class:`EtrLossFunction`, which verl's
``set_loss_fn`` installs in the actor workers in place of ``partial(ppo_loss, config=...)``: it reads the field of
the micro-batch, calls verl's own ``ppo_loss`` unchanged, and the ``etr`` loss picks the field up from a
context variable. Without it (stock trainers) the loss falls back to recovering the signal from the advantages
(see :func:`etr_verl.elastic.variance_ratio_from_binary_advantages`), which checks its own assumption.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Optional

import torch
from verl.trainer.ppo.core_algos import agg_loss
from verl.utils import torch_functional as verl_F

from etr_verl import elastic
from etr_verl.config import LOSS_MODE, etr_policy_loss_config

logger = logging.getLogger(__name__)

MACRO_FIELD = "etr_group_variance_ratio"
"""Batch field carrying ``v_g / v_max`` per response, ``(bs, 1)`` (or ``(bs,)``) fp32, written by the ETR trainer."""

_driver_variance_ratio: ContextVar[Optional[torch.Tensor]] = ContextVar("etr_driver_variance_ratio", default=None)
_fallback_announced = False


@contextmanager
def driver_macro_signal(variance_ratio: Optional[torch.Tensor]) -> Iterator[None]:
    """Make the driver's ``(bs,)`` variance ratios of the current micro-batch visible to the ``etr`` loss."""
    token = _driver_variance_ratio.set(variance_ratio)
    try:
        yield
    finally:
        _driver_variance_ratio.reset(token)


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

    valid_response = response_mask.any(dim=-1)
    adv_magnitude = elastic.response_advantage_magnitude(advantages, response_mask)
    variance_ratio, from_driver = _macro_signal(etr, coeffs, advantages, response_mask, config)
    factor = elastic.elastic_factor(adv_magnitude, variance_ratio, coeffs)
    lower, upper = elastic.clip_bounds(factor, eps_low, eps_high, dtype=torch.result_type(log_prob, old_log_prob))

    terms = elastic.elastic_clipped_surrogate(old_log_prob, log_prob, advantages, lower, upper, clip_ratio_c)
    pg_losses = terms.pg_losses
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    pg_loss = agg_loss(
        loss_mat=pg_losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )

    with torch.no_grad():
        # verl's names and formulas (compute_policy_loss_vanilla), then ETR's; all read in one host sync
        pg_clipfrac = verl_F.masked_mean(terms.clipped.float(), response_mask)
        names = ["actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"]
        parts = [torch.stack([
            pg_clipfrac,
            verl_F.masked_mean(-terms.negative_approx_kl, response_mask),
            verl_F.masked_mean(terms.dual_clipped.float(), response_mask),
        ])]
        etr_names, etr_values = _etr_metrics(
            terms, response_mask, valid_response, factor, variance_ratio, coeffs, eps_low, eps_high, pg_clipfrac
        )
        names += etr_names
        parts += etr_values
        checksum = elastic.non_finite_sum(terms.log_ratio, adv_magnitude, response_mask)
        values, inputs_finite, loss_finite = _read_once(parts, checksum, pg_loss)
    if not inputs_finite:
        bad = elastic.non_finite_inputs(old_log_prob, log_prob, advantages, response_mask)
        raise elastic.ETRInputError(
            f"NaN/inf at valid response tokens in {bad}: the etr loss refuses to produce a NaN loss. Check the "
            "reward/advantage pipeline (advantages) or the rollout/actor numerics (log-probs)."
        )
    if not loss_finite:
        _raise_non_finite_loss(response_mask, loss_agg_mode, config)
    metrics = dict(zip(names, values))
    if variance_ratio is not None:
        metrics["actor/etr/macro_from_driver"] = float(from_driver)
    return pg_loss, metrics


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
            "policy_loss.etr_macro_source=driver, but no driver-side group variance reached the loss. Run with the "
            "ETR trainer (trainer.v1.trainer_mode=etr_sync, or python -m etr_verl.main), or set "
            "etr_macro_source=auto to recover it from binary-reward advantages."
        )
    group_size = config.get("rollout_n", None)
    if not isinstance(group_size, int):
        raise elastic.ETRInputError("recovering the macro signal needs actor.rollout_n (responses per prompt).")
    global _fallback_announced
    if not _fallback_announced:
        _fallback_announced = True
        logger.warning(
            "ETR: no driver-side group variance in this batch; recovering pass rates from std-normalised binary "
            "advantages (group size %d). Exact only for binary outcome rewards; checked on every micro-batch.",
            group_size,
        )
    return elastic.variance_ratio_from_binary_advantages(advantages, response_mask, group_size), False


def _etr_metrics(
    terms: elastic.SurrogateTerms,
    response_mask: torch.Tensor,
    valid_response: torch.Tensor,
    factor: torch.Tensor,
    variance_ratio: Optional[torch.Tensor],
    coeffs: elastic.ElasticityCoefficients,
    eps_low: float,
    eps_high: float,
    pg_clipfrac: torch.Tensor,
) -> tuple[list[str], list[torch.Tensor]]:
    """ETR's diagnostics: names, and 1-d fp32 tensors holding their values in order (read in one host sync).

    Response statistics are over non-empty rows (0 when there is none), computed with masks rather than boolean
    indexing: a fixed, small number of kernels and no device sync (this runs once per micro-batch)."""
    n_valid = valid_response.sum().clamp(min=1).float()
    any_valid = valid_response.any()
    factor_stats = torch.where(any_valid, torch.stack([
        torch.where(valid_response, factor, 0.0).sum() / n_valid,
        torch.where(valid_response, factor, math.inf).amin(),
        torch.where(valid_response, factor, -math.inf).amax(),
    ]), 0.0)
    factor64 = factor_stats.double()  # effective clip ranges eps * f, in fp64 like the bounds
    names = [f"actor/etr/{name}_{stat}" for name in ("factor", "eps_low", "eps_high")
             for stat in ("mean", "min", "max")]
    values = [factor_stats, (factor64 * eps_low).float(), (factor64 * eps_high).float()]
    # a token with A = 0 is never clipped, so the two shares add up to pg_clipfrac (verl's masked_mean
    # denominator; a count of booleans instead of a float mask pass)
    clip_neg = (terms.clipped & terms.negative & response_mask.bool()).sum() / (response_mask.sum() + 1e-8)
    counts = [(factor <= coeffs.factor_min) & valid_response, (factor >= coeffs.factor_max) & valid_response]
    names += ["actor/etr/frac_at_factor_min", "actor/etr/frac_at_factor_max", "actor/etr/pg_clipfrac_adv_pos",
              "actor/etr/pg_clipfrac_adv_neg"]
    shares = [counts[0].sum() / n_valid, counts[1].sum() / n_valid, pg_clipfrac - clip_neg, clip_neg]
    if variance_ratio is not None:
        names += ["actor/etr/macro_weight_mean", "actor/etr/zero_variance_share"]
        weight = elastic.macro_weight(variance_ratio, coeffs)
        shares += [torch.where(valid_response, weight, 0.0).sum() / n_valid,
                   ((variance_ratio <= 0) & valid_response).sum() / n_valid]
    values.append(torch.stack([share.float() for share in shares]))
    return names, values


def _read_once(parts: list[torch.Tensor], checksum: torch.Tensor, loss: torch.Tensor) -> tuple[list[float], bool, bool]:
    """One device-to-host copy for every metric and both finiteness checks (each ``.item()`` would be a sync).

    Args:
        parts: 1-d fp32 tensors of metric values, in the order of their names.
        checksum: 0-d, finite iff the inputs are (:func:`etr_verl.elastic.non_finite_sum`).
        loss: the 0-d loss.
    """
    flags = torch.stack([torch.isfinite(checksum), torch.isfinite(loss.detach()).reshape(())]).float()
    packed = torch.cat([*parts, flags]).tolist()
    return packed[:-2], bool(packed[-2]), bool(packed[-1])


def _raise_non_finite_loss(response_mask: torch.Tensor, loss_agg_mode: str, config: Any) -> None:
    raise elastic.ETRInputError(
        f"the etr loss is not finite (loss_agg_mode={loss_agg_mode!r}, valid tokens={int(response_mask.sum())}, "
        f"global batch info={dict(config.global_batch_info)}). An all-empty response mask with a locally "
        "normalised aggregation divides by zero; inside verl's trainer the global batch size/token count is set "
        "and empty micro-batches contribute 0."
    )


def register() -> None:
    """Register ``etr`` into verl's policy-loss registry (idempotent)."""
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, register_policy_loss

    if POLICY_LOSS_REGISTRY.get(LOSS_MODE) is not compute_policy_loss_etr:
        register_policy_loss(LOSS_MODE)(compute_policy_loss_etr)


class EtrLossFunction:
    """Worker-side loss for verl's ``set_loss_fn``: verl's ``ppo_loss`` with the driver's macro signal visible.

    Picklable (it is sent from the driver to every actor worker); holds the actor config dataclass, as verl's own
    ``partial(ppo_loss, config=actor_config)`` does.
    """

    def __init__(self, actor_config: Any):
        self.config = actor_config

    def __call__(self, model_output: Any, data: Any, dp_group: Any = None) -> tuple[torch.Tensor, dict]:
        from verl.workers.utils.losses import ppo_loss

        with driver_macro_signal(per_sample_field(data, MACRO_FIELD)):
            return ppo_loss(self.config, model_output, data, dp_group)


def per_sample_field(data: Any, key: str) -> Optional[torch.Tensor]:
    """A per-sample scalar field of a (micro-batch) TensorDict as ``(bs,)``, or None when absent."""
    if key not in data.keys():
        return None
    value = data[key]
    if getattr(value, "is_nested", False):
        value = value.values()
    batch_size = data.batch_size[0] if len(data.batch_size) else value.shape[0]
    if value.numel() != batch_size:
        raise elastic.ETRInputError(f"batch field {key!r} has {value.numel()} values for {batch_size} samples.")
    return value.reshape(-1)


from etr_verl.registration import register as _register  # noqa: E402  (importing this module registers ETR)

_register(finished=__name__)
