"""ETR (Elastic Trust Regions, arXiv 2601.03723) — the math, in pure torch.

This module imports nothing from verl, so it can be read (and tested) on its own. The verl adapter lives in
``etr_verl.adapters``. Notation, for response ``i`` of prompt group ``g`` (token ``t``)::

    ratio_it  = exp(clamp(logp_it - oldlogp_it, -20, 20))
    a_i       = clamp(|A_i|, adv_min, adv_max)
    m_i       = a_i ** alpha                 (micro_form power, default)    # micro factor (alpha = 0 -> 1)
              | 1 + alpha * a_i              (micro_form linear: never narrows)
              | 1 + alpha * tanh(a_i)        (micro_form tanh: saturates at 1 + alpha)
    w_g       = lam + (1 - lam) * (v_g / v_max) ** beta                     # macro weight (beta = 0 -> 1)
    f_i       = clamp(m_i * w_g, factor_min, factor_max)    (combine multiply, default)
              | clamp(1 + (m_i - 1) + (w_g - 1), ...)       (combine add: around the static range)
    f_i       = clamp(s * u_i, factor_min, factor_max)             (budget preserve: u_i the unclamped factor,
                  s from the whole batch so that the mean f_i over responses with A_i != 0 is 1)
    eps_low_i = eps_low * f_i ;  eps_high_i = eps_high * f_i   (bounds both, default; upper / lower: one of them)
    loss_it   = max(-A_i * ratio_it, -A_i * clamp(ratio_it, 1 - eps_low_i, 1 + eps_high_i))
    loss_it   = min(loss_it, -A_i * clip_ratio_c)   if A_i < 0        # verl's dual-clip

``v_g / v_max`` is the *variance ratio* of the group's outcome scores, in ``[0, 1]``: the population variance
divided by its largest possible value for scores in ``[reward_low, reward_high]`` (Bhatia-Davis bound
``(reward_high - reward_low)**2 / 4``). For pass/fail outcomes with pass rate ``p`` it is ``4 p (1 - p)``,
whether the scores are 0/1 or -1/+1.

Everything that shapes the trust region (factor, bounds) is computed under ``no_grad``, in fp32; the last step
``1 -+ eps * f`` is done in fp64 and rounded once to the ratio's dtype, so that ``f = 1`` reproduces a static
clip range bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

LOG_RATIO_CLAMP = 20.0
"""``|log pi - log pi_old|`` is clamped to this before ``exp``, as verl does."""

MACRO_SOURCES = ("auto", "driver", "advantages")
MICRO_FORMS = ("power", "linear", "tanh")
COMBINATIONS = ("multiply", "add")
MOVING_BOUNDS = ("both", "upper", "lower")
BUDGETS = ("computed", "preserve")


class ETRInputError(ValueError):
    """Bad input to an ETR computation (non-finite values, impossible groups, out-of-range coefficients)."""


# --------------------------------------------------------------------------------------------------------------
# Coefficients
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElasticityCoefficients:
    """The knobs of the elastic factor ``f_i`` (module docstring): one reading of the paper per setting.

    Attributes:
        alpha: micro elasticity, the strength of the advantage-magnitude term. ``>= 0``; 0 switches micro off.
        beta: macro elasticity, exponent on the group's variance ratio. ``>= 0``; 0 switches macro off.
        adv_min, adv_max: ``|A_i|`` is clamped to ``[adv_min, adv_max]`` before the micro form.
        factor_min, factor_max: the factor is clamped to ``[factor_min, factor_max]``.
        micro_form: ``power`` (``a ** alpha``), ``linear`` (``1 + alpha a``) or ``tanh`` (``1 + alpha tanh a``).
        macro_floor: ``lam`` in ``[0, 1]``: the macro weight is ``lam + (1 - lam) (v/v_max) ** beta``, so that a
            skewed or zero-variance group keeps a share ``lam`` of the budget. 0: today's ``(v/v_max) ** beta``.
        combine: ``multiply`` (``m w``) or ``add`` (``1 + (m - 1) + (w - 1)``).
        bounds: which clip bounds the factor scales: ``both``, ``upper`` (``eps_high`` only: elastic room for
            ``A > 0`` only, as clip-higher) or ``lower`` (``eps_low`` only: for ``A < 0`` only).
        budget: ``computed`` (each factor as its formula gives it) or ``preserve`` (the factors of a whole batch
            rescaled so that their mean over responses with ``A_i != 0`` is 1: :func:`budget_preserving_factor`).
    """

    alpha: float = 0.0
    beta: float = 0.0
    adv_min: float = 0.0
    adv_max: float = math.inf
    factor_min: float = 1.0
    factor_max: float = 1.0
    micro_form: str = "power"
    macro_floor: float = 0.0
    combine: str = "multiply"
    bounds: str = "both"
    budget: str = "computed"

    def __post_init__(self) -> None:
        validate_coefficients(self.alpha, self.beta, self.adv_min, self.adv_max, self.factor_min, self.factor_max)
        validate_reading(self.alpha, self.beta, self.micro_form, self.macro_floor, self.combine, self.bounds,
                         self.budget)
        validate_budget(self.budget, self.factor_min, self.factor_max)

    @property
    def micro_on(self) -> bool:
        return self.alpha != 0.0

    @property
    def macro_on(self) -> bool:
        return self.beta != 0.0

    @property
    def elasticity_off(self) -> bool:
        """True when every factor is exactly 1: ETR is then verl's ``vanilla`` loss."""
        return (not self.micro_on and not self.macro_on and self.factor_min <= 1.0 <= self.factor_max) or (
            self.factor_min == 1.0 and self.factor_max == 1.0
        )


def validate_coefficients(
    alpha: float, beta: float, adv_min: float, adv_max: float, factor_min: float, factor_max: float, prefix: str = ""
) -> None:
    """Raise :class:`ETRInputError` naming the bad value and the fix. ``prefix`` is the config path to name."""

    def bad(name: str, value: float, rule: str) -> ETRInputError:
        return ETRInputError(f"{prefix}{name}={value!r} is out of range: {rule}.")

    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise bad(name, value, "it must be a finite number >= 0 (0 switches this elasticity off)")
    if not (isinstance(adv_min, (int, float)) and math.isfinite(adv_min) and adv_min >= 0):
        raise bad("adv_min", adv_min, "it must be a finite number >= 0")
    if not (isinstance(adv_max, (int, float)) and not math.isnan(adv_max) and adv_max >= adv_min):
        raise bad("adv_max", adv_max, f"it must be >= adv_min={adv_min!r} (use .inf for no cap)")
    if not (isinstance(factor_min, (int, float)) and math.isfinite(factor_min) and factor_min >= 0):
        raise bad("factor_min", factor_min, "it must be a finite number >= 0")
    if not (isinstance(factor_max, (int, float)) and math.isfinite(factor_max) and factor_max >= factor_min):
        raise bad("factor_max", factor_max, f"it must be finite and >= factor_min={factor_min!r}")


def validate_reading(
    alpha: float, beta: float, micro_form: str, macro_floor: float, combine: str, bounds: str,
    budget: str = "computed", prefix: str = "",
) -> list[str]:
    """The reading's keys are known values (else :class:`ETRInputError`); returns one message per key that is
    inert with the levels switched off (a reading that silently equals another is a wasted run; the config warns
    with these). ``prefix`` is the config path to name."""
    for name, value, allowed in (("micro_form", micro_form, MICRO_FORMS), ("combine", combine, COMBINATIONS),
                                 ("bounds", bounds, MOVING_BOUNDS), ("budget", budget, BUDGETS)):
        if value not in allowed:
            raise ETRInputError(f"{prefix}{name}={value!r} is not one of {allowed}.")
    if not (isinstance(macro_floor, (int, float)) and not isinstance(macro_floor, bool) and 0.0 <= macro_floor <= 1.0):
        raise ETRInputError(f"{prefix}macro_floor={macro_floor!r} is out of range: it must be in [0, 1].")
    inert = []
    if alpha == 0 and micro_form != "power":
        inert.append(f"{prefix}micro_form={micro_form!r} does nothing with {prefix}alpha=0 (micro level off)")
    if beta == 0 and macro_floor != 0:
        inert.append(f"{prefix}macro_floor={macro_floor!r} does nothing with {prefix}beta=0 (macro level off)")
    if combine != "multiply" and (alpha == 0 or beta == 0):
        inert.append(f"{prefix}combine={combine!r} equals 'multiply' unless both levels are on (alpha, beta > 0)")
    if bounds != "both" and alpha == 0 and beta == 0:
        inert.append(f"{prefix}bounds={bounds!r} does nothing with both levels off")
    if budget != "computed" and alpha == 0 and beta == 0:
        inert.append(f"{prefix}budget={budget!r} does nothing with both levels off")
    return [f"{message}: remove the key or switch its level on" for message in inert]


def validate_budget(budget: str, factor_min: float, factor_max: float, prefix: str = "") -> list[str]:
    """``budget=preserve`` needs the static range inside the factor's clamps (else :class:`ETRInputError`);
    returns a message when the clamps make it inert (``factor_min = 1`` or ``factor_max = 1``: factors on one
    side of 1 with mean 1 are all 1, which is GRPO's static range). ``prefix`` is the config path to name."""
    if budget != "preserve":
        return []
    if not factor_min <= 1.0 <= factor_max:
        raise ETRInputError(
            f"{prefix}budget='preserve' with {prefix}factor_min={factor_min!r}, {prefix}factor_max={factor_max!r}: "
            "a batch-mean factor of 1 (the static budget) is out of reach. Use factor_min <= 1 <= factor_max."
        )
    if factor_min == 1.0 or factor_max == 1.0:
        return [f"{prefix}budget='preserve' with {prefix}factor_min={factor_min!r}, {prefix}factor_max="
                f"{factor_max!r} makes every factor 1 (factors on one side of 1 whose mean is 1 are all 1): widen "
                "the clamps around 1 or use budget='computed'"]
    return []


def validate_clip_range(eps_low: float, eps_high: float, factor_max: float, prefix: str = "") -> None:
    """The widest lower bound ``1 - eps_low * factor_max`` must stay above 0, or the ratio could be clipped to
    a non-positive value. Raises :class:`ETRInputError` naming the values and the fix."""
    for name, value in (("clip_ratio_low", eps_low), ("clip_ratio_high", eps_high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ETRInputError(
                f"actor_rollout_ref.actor.{name}={value!r}: a finite number is needed (null falls back to "
                "actor_rollout_ref.actor.clip_ratio, which must then be one)."
            )
    if eps_low < 0 or eps_high < 0:
        raise ETRInputError(f"clip ratios must be >= 0, got clip_ratio_low={eps_low!r}, clip_ratio_high={eps_high!r}.")
    if eps_low * factor_max >= 1.0:
        raise ETRInputError(
            f"clip_ratio_low * {prefix}factor_max = {eps_low!r} * {factor_max!r} = {eps_low * factor_max!r} >= 1: "
            "the elastic lower bound 1 - eps_low * f would reach 0. Lower factor_max or clip_ratio_low."
        )


# --------------------------------------------------------------------------------------------------------------
# The elastic factor
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def response_advantage_magnitude(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``|A_i|`` per response: the largest ``|A_it|`` over the response's valid tokens.

    For outcome advantages (GRPO, ETR's estimator) every valid token carries the same value, so this is exactly
    that value. A response with no valid token gets 0.

    Args:
        advantages: ``(bs, T)`` token advantages.
        response_mask: ``(bs, T)`` bool, valid response tokens.

    Returns:
        ``(bs,)`` fp32.
    """
    masked = torch.where(response_mask.bool(), advantages, 0.0)  # under no_grad: no graph, no detach needed
    # abs + amax: the same exact values as vector_norm(ord=inf), about 3x faster on the CPU; NaN propagates.
    # In place: one (bs, T) temporary, not two.
    return masked.abs_().amax(dim=-1).float()


def response_has_tokens(response_mask: torch.Tensor) -> torch.Tensor:
    """``(bs, T)`` mask -> ``(bs,)`` bool, rows with at least one valid token (verl's padding rows have none).

    A numeric mask holds 0/1 weights, as verl's (its response lengths are ``response_mask.sum(-1)``): a row has a
    token when its largest entry is positive. One pass, no ``(bs, T)`` temporary, and an order of magnitude faster
    on the CPU for long rows than ``any(dim=-1)``; a bool mask is reduced as bytes (``amax`` of its ``uint8`` view).
    """
    if response_mask.shape[-1] == 0:
        return torch.zeros(response_mask.shape[:-1], dtype=torch.bool, device=response_mask.device)
    mask = response_mask.view(torch.uint8) if response_mask.dtype == torch.bool else response_mask
    if mask.dim() == 2 and mask.device.type == "cpu" and mask.numel() >= 1 << 18:
        # verl's responses are right-padded: a row whose first entry is valid has a token, without reading the
        # rest of it; only the other rows (padding samples, or a response whose first token is masked) are scanned.
        # The same answer as the full scan for every mask without NaN, at a read of one column instead of (bs, T):
        # the driver's estimator, 2048 x 8192 fp32 ones, 0.03 ms instead of 7 ms (benchmarks/overhead.py). Below
        # 2**18 entries the one full pass costs no more than these few small ops; on a GPU, finding the rows to
        # scan would be a host sync.
        has_tokens = mask[:, 0] > 0
        unsure = (~has_tokens).nonzero().flatten()
        if unsure.numel():
            has_tokens[unsure] = mask.index_select(0, unsure).amax(dim=-1) > 0
        return has_tokens
    return mask.amax(dim=-1) > 0


def _rounded_once(function, values: torch.Tensor) -> torch.Tensor:
    """``function(values)`` computed in fp64 and rounded once to fp32.

    For ``pow`` and ``tanh``: CPU vector kernels round them differently in the SIMD body and the scalar tail of a
    loop (measured on AVX2: ``x ** 1.125`` differs by one fp32 ulp), so a response's factor would depend on where
    it sits in its micro-batch. A last-bit difference in fp64 survives the rounding to fp32 only at a near-tie (about
    one value in 2**29), so the factor of a response is the same on any split of the batch (tests/test_readings.py).
    """
    return function(values.double()).float()


def micro_factor(adv_magnitude: torch.Tensor, coeffs: ElasticityCoefficients) -> torch.Tensor:
    """The micro factor of ``a_i = clamp(|A_i|, adv_min, adv_max)``, by ``coeffs.micro_form``:
    ``power``: ``a ** alpha``; ``linear``: ``1 + alpha a``; ``tanh``: ``1 + alpha tanh(a)``.

    ``(bs,)`` fp32 -> ``(bs,)`` fp32; exactly 1 when ``alpha = 0`` (every form).
    """
    magnitude = adv_magnitude.float()
    if coeffs.adv_min > 0 or coeffs.adv_max < math.inf:  # |A| >= 0 already: [0, inf] is the identity (NaN kept)
        magnitude = magnitude.clamp(min=coeffs.adv_min, max=coeffs.adv_max)
    if coeffs.micro_form == "linear":
        return 1.0 + coeffs.alpha * magnitude
    if coeffs.micro_form == "tanh":
        return 1.0 + coeffs.alpha * _rounded_once(torch.tanh, magnitude)
    return magnitude if coeffs.alpha == 1.0 else _rounded_once(lambda a: torch.pow(a, coeffs.alpha), magnitude)


def macro_weight(variance_ratio: torch.Tensor, coeffs: ElasticityCoefficients) -> torch.Tensor:
    """``w_g = lam + (1 - lam) (v_g / v_max) ** beta`` (``lam = macro_floor``; 0: ``(v_g / v_max) ** beta``);
    ``(bs,)`` variance ratios in ``[0, 1]`` -> ``(bs,)`` fp32, in ``[lam, 1]``."""
    weight = _rounded_once(lambda v: torch.pow(v, coeffs.beta), variance_ratio.float().clamp(min=0.0, max=1.0))
    if coeffs.macro_floor:
        weight = coeffs.macro_floor + (1.0 - coeffs.macro_floor) * weight
    return weight


@torch.no_grad()
def unclamped_factor(
    adv_magnitude: torch.Tensor, variance_ratio: Optional[torch.Tensor], coeffs: ElasticityCoefficients
) -> torch.Tensor:
    """``u_i = m_i * w_g`` (``combine=add``: ``m_i + w_g - 1``), before the factor's clamps.

    Args:
        adv_magnitude: ``(bs,)`` ``|A_i|``.
        variance_ratio: ``(bs,)`` ``v_g / v_max`` of each response's group, or None when macro elasticity is off.
        coeffs: the elasticity coefficients.

    Returns:
        ``(bs,)`` fp32.
    """
    factor = micro_factor(adv_magnitude, coeffs)
    if coeffs.macro_on:
        if variance_ratio is None:
            raise ETRInputError("macro elasticity is on (beta > 0) but no group variance ratio was given.")
        weight = macro_weight(variance_ratio, coeffs)
        factor = factor + (weight - 1.0) if coeffs.combine == "add" else factor * weight
    return factor


@torch.no_grad()
def elastic_factor(
    adv_magnitude: torch.Tensor, variance_ratio: Optional[torch.Tensor], coeffs: ElasticityCoefficients
) -> torch.Tensor:
    """``f_i = clamp(u_i, factor_min, factor_max)``, the factor of ``budget=computed``: the arguments of
    :func:`unclamped_factor`, ``(bs,)`` fp32 inside ``[factor_min, factor_max]``."""
    return unclamped_factor(adv_magnitude, variance_ratio, coeffs).clamp(min=coeffs.factor_min,
                                                                         max=coeffs.factor_max)


BISECTION_STEPS = 80
"""Bisection steps of :func:`budget_scale` (each halves the bracket of ``s``; fp64 has 53 bits)."""


@torch.no_grad()
def budget_scale(unclamped: torch.Tensor, factor_min: float, factor_max: float) -> float:
    """The scale ``s >= 0`` solving ``mean_i clamp(s u_i, factor_min, factor_max) = 1`` over the given ``u_i``.

    ``g(s) = mean_i clamp(s u_i, f_min, f_max)`` is continuous and non-decreasing, from ``g(0) = f_min <= 1`` to
    ``g(inf) = share(u > 0) f_max + share(u <= 0) f_min``. Bisection brackets the root; inside the bracket the
    responses split into those at the floor (``L``), at the ceiling (``H``) and between (``M``), and
    ``s = (n - |L| f_min - |H| f_max) / sum_M u_i`` solves ``g(s) = 1`` exactly (in fp64). Uniform ``u_i = c``
    gives ``s = 1 / c``: every factor is then exactly 1.

    When ``g(inf) < 1`` (too many ``u_i <= 0``: possible with ``combine=add``) the budget cannot be reached; the
    smallest ``s`` that puts every ``u_i > 0`` at the ceiling is returned (the closest to the static budget).

    Args:
        unclamped: ``(n,)`` the unclamped factors ``u_i`` of the responses that carry a learning signal.
        factor_min, factor_max: the factor's clamps, ``factor_min <= 1 <= factor_max``.

    Returns:
        ``s``, a Python float; 1.0 when there is no response or the clamps pin the factor.
    """
    u = unclamped.double().reshape(-1)
    n = u.numel()
    if n == 0 or factor_min == factor_max:
        return 1.0
    if factor_min >= 1.0:  # factor_min = 1: s = 0 already gives g = 1
        return 0.0
    positive = u[u > 0]
    if positive.numel() == 0:
        return 1.0  # every factor sits at the floor whatever s is

    def g(s: float) -> float:
        return float(torch.clamp(s * u, factor_min, factor_max).mean())

    high = factor_max / float(positive.min())  # g(high) = g(inf)
    if g(high) < 1.0:
        return high
    low = 0.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if g(middle) < 1.0:
            low = middle
        else:
            high = middle
    middle = 0.5 * (low + high)
    scaled = middle * u
    at_floor, at_ceiling = scaled <= factor_min, scaled >= factor_max
    between = ~(at_floor | at_ceiling)
    between_sum = float(u[between].sum())
    if between_sum <= 0:
        return middle
    remaining = n - int(at_floor.sum()) * factor_min - int(at_ceiling.sum()) * factor_max
    return remaining / between_sum


@torch.no_grad()
def budget_preserving_factor(
    adv_magnitude: torch.Tensor,
    variance_ratio: Optional[torch.Tensor],
    informative: torch.Tensor,
    coeffs: ElasticityCoefficients,
) -> torch.Tensor:
    """``f_i = clamp(s u_i, factor_min, factor_max)`` with ``s = budget_scale(u over the informative responses)``:
    the factors of ``budget=preserve``, computed from a whole batch (in the driver, never per micro-batch).

    The budget is the mean factor over the responses with a learning signal (``A_i != 0``): a response with
    ``A_i = 0`` has no gradient whatever its range, so counting it would let the reading spend budget on nothing.
    ETR then *redistributes* GRPO's budget between responses instead of growing or shrinking it: the batch-mean
    clip range equals the static one (for ``bounds=upper``/``lower``, the moving bound's).

    Args:
        adv_magnitude: ``(bs,)`` ``|A_i|``.
        variance_ratio: ``(bs,)`` ``v_g / v_max``, or None when macro elasticity is off.
        informative: ``(bs,)`` bool, the responses whose factors the budget is taken over (valid, ``A_i != 0``).
        coeffs: the elasticity coefficients (``budget`` itself is not read: this is the preserving factor).

    Returns:
        ``(bs,)`` fp32, inside ``[factor_min, factor_max]``.
    """
    unclamped = unclamped_factor(adv_magnitude, variance_ratio, coeffs).double()
    scale = budget_scale(unclamped[informative.reshape(-1).bool()], coeffs.factor_min, coeffs.factor_max)
    return (scale * unclamped).clamp(min=coeffs.factor_min, max=coeffs.factor_max).float()


@torch.no_grad()
def clip_bounds(
    factor: torch.Tensor, eps_low: float, eps_high: float, dtype: torch.dtype, bounds: str = "both"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-response ratio bounds ``(1 - eps_low * f_i, 1 + eps_high * f_i)``; ``bounds=upper`` scales only
    ``eps_high`` (the lower bound stays ``1 - eps_low``), ``bounds=lower`` only ``eps_low``.

    Computed in fp64 and rounded once to ``dtype`` (the ratio's), which is how ``torch.clamp`` rounds a Python
    float bound: with ``f_i = 1`` the bounds are bit-identical to a static ``[1 - eps_low, 1 + eps_high]``.

    Args:
        factor: ``(bs,)`` elastic factors.

    Returns:
        lower, upper: ``(bs, 1)`` in ``dtype``, ready to broadcast over tokens.
    """
    f64 = factor.double().unsqueeze(-1)
    static = torch.ones_like(f64)
    f_low = f64 if bounds in ("both", "lower") else static
    f_high = f64 if bounds in ("both", "upper") else static
    return (1.0 - eps_low * f_low).to(dtype), (1.0 + eps_high * f_high).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# The macro signal
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def group_variance_ratio(
    scores: torch.Tensor,
    group_index: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    reward_low: float = 0.0,
    reward_high: float = 1.0,
    require_group_size_above_one: bool = True,
) -> torch.Tensor:
    """The macro signal ``v_g / v_max`` of every response's group, from whole groups, vectorised.

    ``v_g`` is the population variance of the outcome scores of the valid responses of group ``g``;
    ``v_max = (reward_high - reward_low) ** 2 / 4`` is the largest variance scores in that range can have.
    For 0/1 (or -1/+1 with the range set to [-1, 1]) outcomes with pass rate ``p``: ``4 p (1 - p)``.

    Args:
        scores: ``(bs,)`` outcome score of each response.
        group_index: ``(bs,)`` int64 group id of each response (any labels; need not be contiguous).
        valid: ``(bs,)`` bool, responses that count (verl's synthetic padding rows have an empty mask and do
            not). Default: all.
        reward_low, reward_high: the range outcome scores live in.
        require_group_size_above_one: raise when a group has exactly one valid response (its variance is
            undefined as a learning signal).

    Returns:
        ``(bs,)`` fp32 in ``[0, 1]``; 0 for invalid responses.
    """
    scores = scores.reshape(-1)
    group_index = group_index.reshape(-1)
    bs = scores.numel()
    if group_index.numel() != bs:
        raise ETRInputError(f"group ids ({group_index.numel()}) and scores ({bs}) disagree in length.")
    if valid is None:
        valid = torch.ones(bs, dtype=torch.bool, device=scores.device)
    valid = valid.reshape(-1).bool()
    if not (reward_high > reward_low):
        raise ETRInputError(f"reward_high={reward_high!r} must be > reward_low={reward_low!r}.")
    if bs == 0:
        return torch.zeros(0, dtype=torch.float32, device=scores.device)

    scores64 = scores.double()
    if not bool(torch.isfinite(scores64[valid]).all()):
        raise ETRInputError("outcome scores contain NaN/inf; check the reward function.")
    valid_scores = scores64[valid]
    if valid_scores.numel() and (
        bool((valid_scores < reward_low).any()) or bool((valid_scores > reward_high).any())
    ):
        lo, hi = valid_scores.min().item(), valid_scores.max().item()
        raise ETRInputError(
            f"outcome scores span [{lo:g}, {hi:g}], outside the configured range [{reward_low:g}, {reward_high:g}]. "
            "Set algorithm.etr.reward_low / reward_high to the range your reward function returns "
            "(math_dapo gives -1/+1, plus DAPO's overlong penalty below -1 when it is on)."
        )

    _, dense = torch.unique(group_index, return_inverse=True)
    n_groups = int(dense.max().item()) + 1
    weight = valid.double()
    count = torch.zeros(n_groups, dtype=torch.float64, device=scores.device).index_add_(0, dense, weight)
    if require_group_size_above_one and bool((count == 1).any()):
        lonely = group_index[(count == 1)[dense] & valid][:5].tolist()
        raise ETRInputError(
            f"group(s) {lonely} have a single valid response: macro elasticity needs the outcome variance of a "
            "group. Sample several responses per prompt (actor_rollout_ref.rollout.n > 1) or set beta = 0."
        )
    # invalid rows are replaced, not multiplied by 0: a NaN score in a padding row must not reach its group
    counted = torch.where(valid, scores64, torch.zeros_like(scores64))
    centre = torch.zeros_like(count).index_add_(0, dense, counted) / count.clamp(min=1)
    deviation = torch.where(valid, counted - centre[dense], torch.zeros_like(scores64))
    variance = torch.zeros_like(count).index_add_(0, dense, deviation * deviation) / count.clamp(min=1)
    v_max = (reward_high - reward_low) ** 2 / 4.0
    ratio = (variance / v_max).clamp(min=0.0, max=1.0)[dense] * weight
    return ratio.float()


@torch.no_grad()
def variance_ratio_from_binary_advantages(
    advantages: torch.Tensor, response_mask: torch.Tensor, group_size: int, rtol: float = 1e-2
) -> torch.Tensor:
    """Recover ``4 p (1 - p)`` from GRPO advantages of *binary* outcomes normalised by the group std.

    Fallback for runs without the driver-side macro signal (stock ``verl.trainer.main_ppo``). For two-valued
    rewards (0/1, -1/+1, ...) in a group of ``G`` with ``k`` successes, GRPO gives (unbiased std, ``p = k/G``)::

        A_success = +sqrt((G-1)/G * (1-p)/p)      A_failure = -sqrt((G-1)/G * p/(1-p))

    so ``c = A**2 * G/(G-1)`` gives ``p = 1/(1+c)`` (success) or ``c/(1+c)`` (failure). The implied ``k = p G``
    must be an integer in ``[1, G-1]``; when it is not, the assumption (binary rewards, std normalisation,
    groups of ``G``) is false and this raises :class:`ETRInputError` rather than guess.

    Args:
        advantages: ``(bs, T)`` token advantages.
        response_mask: ``(bs, T)`` bool.
        group_size: ``G``, responses per prompt (``actor_rollout_ref.rollout.n``).
        rtol: tolerance on the implied success count (absolute, in counts).

    Returns:
        ``(bs,)`` fp32 variance ratio; 0 for responses with ``A = 0`` (zero-variance groups, padding).
    """
    if group_size < 2:
        raise ETRInputError(f"cannot recover group pass rates with group_size={group_size}; it must be >= 2.")
    mask = response_mask.bool()
    # signed per-response advantage: value of the largest-magnitude valid token (all equal for outcome rewards)
    magnitude = response_advantage_magnitude(advantages, mask).double()
    signed_sum = torch.where(mask, advantages.detach().double(), torch.zeros((), dtype=torch.float64)).sum(-1)
    is_success = signed_sum > 0
    c = magnitude.square() * group_size / (group_size - 1)
    pass_rate = torch.where(is_success, 1.0 / (1.0 + c), c / (1.0 + c))
    k = pass_rate * group_size
    k_round = k.round()
    informative = magnitude > 0
    consistent = ((k - k_round).abs() <= rtol) & (k_round >= 1) & (k_round <= group_size - 1)
    if bool((informative & ~consistent).any()):
        bad = (informative & ~consistent).nonzero()[:3].flatten().tolist()
        raise ETRInputError(
            "macro elasticity fell back to recovering pass rates from advantages, and its assumption failed: "
            f"responses {bad} have |A| = {magnitude[bad].tolist()} which no binary-reward group of size "
            f"{group_size} with std-normalised GRPO advantages produces (implied successes {k[bad].tolist()}). "
            "Use the exact driver-side signal (run python -m etr_verl.main with algorithm.adv_estimator=etr_grpo), "
            "or switch macro elasticity off (policy_loss.etr_beta=0)."
        )
    p = k_round / group_size
    return torch.where(informative, 4.0 * p * (1.0 - p), torch.zeros_like(p)).float()


# --------------------------------------------------------------------------------------------------------------
# The clipped surrogate
# --------------------------------------------------------------------------------------------------------------


class _ClampRatio(torch.autograd.Function):
    """``torch.clamp(ratio, lower, upper)`` for per-response ``(bs, 1)`` bounds: same values, same gradient.

    Why not ``torch.clamp``: with bounds broadcast over tokens its forward and backward take a slow strided
    path (about 1.8x the fwd+bwd time of a scalar-bound clamp on the CPU at 8 x 4096). ``maximum``/``minimum`` are
    fast under broadcasting and give the same values (``clamp(x, lo, hi) = min(max(x, lo), hi)``, NaN
    propagated), but their gradient halves at ties; this function keeps clamp's gradient: ``grad`` where
    ``lower <= ratio <= upper`` (bounds included, NaN excluded), else 0 — the mask is ``clamped == ratio``,
    saved as one byte per token.
    """

    @staticmethod
    def forward(ctx, ratio: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        clamped = torch.maximum(ratio, lower)
        torch.minimum(clamped, upper, out=clamped)  # in place: one (bs, T) temporary, as torch.clamp
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(clamped == ratio)
        return clamped

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], None, None]:
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, 0.0), None, None


def clamp_ratio(ratio: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``clamp(ratio, lower, upper)`` bit for bit, values and gradient w.r.t. ``ratio`` (bounds take none).

    Args:
        ratio: ``(bs, T)``; lower, upper: ``(bs, 1)`` or ``(bs, T)`` in the ratio's dtype, ``lower <= upper``.
    """
    if lower.requires_grad or upper.requires_grad:
        raise ETRInputError("clip bounds must not require grad: ETR's trust region is not differentiated.")
    return _ClampRatio.apply(ratio, lower, upper)


@dataclass
class SurrogateTerms:
    """Per-token tensors of the elastic clipped surrogate, all ``(bs, T)``.

    The clip indicators are methods, not fields: the metric block computes, reduces and frees them one at a
    time, so that the loss's peak memory stays close to ``vanilla``'s (which never holds them together). The
    tensors they are computed from are held by autograd for the backward anyway.

    Attributes:
        pg_losses: the loss matrix before rollout-IS weights and aggregation.
        log_ratio: ``log pi - log pi_old`` before the clamp (non-finite iff a log-prob is).
        negative_approx_kl: clamped ``log pi - log pi_old``.
        negative: bool, ``A < 0``.
        unclipped, clipped_ratio: ``-A r`` and ``-A clip(r, lower_i, upper_i)``.
        clipped_loss, dual_clip_loss: ``max(-A r, -A clip(r))`` and ``-A c``.
    """

    pg_losses: torch.Tensor
    log_ratio: torch.Tensor
    negative_approx_kl: torch.Tensor
    negative: torch.Tensor
    unclipped: torch.Tensor
    clipped_ratio: torch.Tensor
    clipped_loss: torch.Tensor
    dual_clip_loss: torch.Tensor

    def clipped(self) -> torch.Tensor:
        """bool, the (elastic) clip is active: ``-A clip(r) > -A r`` (verl's ``pg_clipfrac`` indicator)."""
        return torch.gt(self.clipped_ratio, self.unclipped)

    def dual_clipped(self) -> torch.Tensor:
        """bool, the dual-clip is active: ``A < 0`` and the loss hit ``-A c`` (verl's ``pg_clipfrac_lower``)."""
        hits = torch.gt(self.clipped_loss, self.dual_clip_loss)
        hits &= self.negative
        return hits


def elastic_clipped_surrogate(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    clip_ratio_c: float,
) -> SurrogateTerms:
    """PPO's clipped surrogate with per-response bounds and verl's dual-clip (arXiv 1912.09729)::

        r       = exp(clamp(logp - logp_old, -20, 20))
        L1      = max(-A r, -A clip(r, lower_i, upper_i))
        L       = min(L1, -A c)  if A < 0  else  L1

    The operations are verl's ``compute_policy_loss_vanilla``'s, in the same order, so that static bounds give
    the same bits.

    Args:
        old_log_prob, log_prob, advantages: ``(bs, T)``; ``log_prob`` carries the gradient.
        lower, upper: ``(bs, 1)`` (or ``(bs, T)``) ratio bounds, in the ratio's dtype (see :func:`clip_bounds`).
        clip_ratio_c: dual-clip constant ``c > 1``.
    """
    if not clip_ratio_c > 1.0:
        raise ETRInputError(f"clip_ratio_c={clip_ratio_c!r} must be > 1 for dual-clip PPO.")
    log_ratio = log_prob - old_log_prob
    negative_approx_kl = torch.clamp(log_ratio, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * clamp_ratio(ratio, lower, upper)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    negative = advantages < 0
    return SurrogateTerms(
        pg_losses=torch.where(negative, clip_pg_losses2, clip_pg_losses1),
        log_ratio=log_ratio,
        negative_approx_kl=negative_approx_kl,
        negative=negative,
        unclipped=pg_losses1,
        clipped_ratio=pg_losses2,
        clipped_loss=clip_pg_losses1,
        dual_clip_loss=pg_losses3,
    )


@torch.no_grad()
def log_ratio_checksum(log_ratio: torch.Tensor) -> torch.Tensor:
    """0-d fp32, finite when ``old_log_prob`` and ``log_prob`` are finite at valid tokens: a fast screen.

    Built from what the loss computes anyway, with no pass of its own over the mask: ``log_ratio =
    log pi - log pi_old`` (before the clamp, which would hide an infinite log-prob) is NaN/inf where either
    log-prob is. It is summed over *every* token, so a NaN in padding (or an overflowing sum) also makes it
    non-finite: the caller then runs the exact, masked :func:`non_finite_counts` and acts only if that names an
    input. (Advantages are screened by their per-response ``|A_i|``, which is already masked.)

    Args:
        log_ratio: ``(bs, T)``.
    """
    return log_ratio.sum(dtype=torch.float32)


@torch.no_grad()
def non_finite_counts(named: dict[str, Optional[torch.Tensor]], response_mask: torch.Tensor) -> dict[str, int]:
    """For each ``(bs, T)`` tensor in ``named`` (None skipped): how many valid tokens hold NaN/inf; only the
    inputs with at least one."""
    mask = response_mask.bool()
    counts = {}
    for name, tensor in named.items():
        if tensor is not None:
            count = int((~torch.isfinite(tensor.detach()) & mask).sum())
            if count:
                counts[name] = count
    return counts
