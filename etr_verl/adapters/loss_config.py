"""ETR's configuration: a verl ``PolicyLossConfig`` subclass for the loss, and the ``algorithm.etr`` block.

Loss keys live next to verl's own under ``actor_rollout_ref.actor.policy_loss`` and are built by verl itself
(``omega_conf_to_dataclass`` through ``_target_``) in the driver and in every actor worker::

    actor_rollout_ref.actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=etr
    actor_rollout_ref.actor.policy_loss.etr_alpha=1.0      # '+' prefix when composing verl's own ppo_trainer

The ``_target_`` names :mod:`etr_verl.config`, which re-exports these classes and registers ETR when imported: the
loud loading path (if etr_verl is missing or broken in a process, building the actor config fails there).

Provenance of the defaults: the paper's coefficients were not available (``docs/algorithm.md``). The defaults are
the project's documented reading — ``alpha = 1, beta = 1/2`` makes ``f_i`` proportional to ``2|r_i - mean_g|``
for binary rewards (the group's budget is proportional to its variance) — with the factor kept in
``[0.5, 2]``. The first learning benchmark (``docs/benchmarks.md``, appendix A: 3 seeds on the single-digit task against
``alpha = 0.5``, ``beta = 1``, a factor floor of 1 and the single-level ablations) kept them: best final accuracy
and smallest seed spread among the ETR variants; weak evidence, to revisit with the 7-8B recipes. Its successor,
the carry miniature (``docs/benchmarks.md`` section 1, 3 seeds), found these defaults level with GRPO, DAPO, a
static control with ETR's mean range, the micro-only and macro-only ablations and every other reading (budget-
preserving, upper-only, linear, tanh, floor, additive) on every measure, in a regime where GRPO is healthy. Nothing
there chooses between readings, so the defaults are kept by reading (the spec's variance-proportional one), not
because they measured better. In the one regime found where GRPO's pass@k narrows (a warm start trained on
noisy solutions: GRPO's pass@64 drops below the start's in four seeds of five; section 1, "The result"), these
defaults narrow in the same seeds and are level with GRPO over the run (5 seeds: 3-column pass@64 AUC minus GRPO's
+0.006 ± 0.016), as are DAPO and the static control; the other readings have not run there (section 1,
"Defaults").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

from verl.workers.config import PolicyLossConfig

from etr_verl.elastic import (
    MACRO_SOURCES,
    ElasticityCoefficients,
    ETRInputError,
    validate_budget,
    validate_coefficients,
    validate_reading,
)

POLICY_LOSS_TARGET = "etr_verl.config.EtrPolicyLossConfig"
NON_FINITE_POLICIES = ("skip_update", "raise")
# ElasticityCoefficients' fields, in the order validate_coefficients / validate_reading take them; the config
# key of each is etr_<name>
NUMERIC_COEFFICIENTS = ("alpha", "beta", "adv_min", "adv_max", "factor_min", "factor_max")
READING_COEFFICIENTS = ("alpha", "beta", "micro_form", "macro_floor", "combine", "bounds", "budget")
COEFFICIENT_NAMES = tuple(dict.fromkeys(NUMERIC_COEFFICIENTS + READING_COEFFICIENTS))
# the numeric keys, which YAML may spell as strings (".inf")
COEFFICIENT_FIELDS = tuple(f"etr_{name}" for name in NUMERIC_COEFFICIENTS + ("macro_floor",))


def yaml_float(text: str, key: str) -> float:
    """A number written as YAML writes it (``.inf``, ``-.inf``, ``1e-3``), or :class:`ETRInputError` naming ``key``."""
    cleaned = text.strip().lower()
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    if cleaned in special:
        return special[cleaned]
    try:
        return float(cleaned)
    except ValueError:
        raise ETRInputError(f"{key}={text!r} is not a number (YAML spells infinity .inf).") from None


LOSS_MODE = "etr"


class InertReadingWarning(UserWarning):
    """A reading key (micro form, macro floor, combination, moving bounds) changes nothing: its level is off."""


@dataclass
class EtrPolicyLossConfig(PolicyLossConfig):
    """verl's policy-loss config plus ETR's coefficients (``loss_mode=etr``).

    Args:
        etr_alpha (float): micro elasticity (ETR, arXiv 2601.03723, "micro level"): exponent on the response's
            advantage magnitude ``|A_i|``. ``>= 0``; 0 switches it off. Default 1.0 (docs/benchmarks.md).
        etr_beta (float): macro elasticity (ETR, "macro level"): exponent on the group's outcome-variance ratio
            ``v_g / v_max`` (``4 p (1-p)`` for pass/fail). ``>= 0``; 0 switches it off. Default 0.5
            (docs/benchmarks.md).
        etr_adv_min (float): ``|A_i|`` is clamped from below to this before the exponent. Default 0.
        etr_adv_max (float): ``|A_i|`` is clamped from above to this before the exponent. Default .inf.
        etr_factor_min (float): lower clamp of the elastic factor ``f_i``. Default 0.5 (docs/benchmarks.md).
        etr_factor_max (float): upper clamp of ``f_i``; ``clip_ratio_low * etr_factor_max`` must stay < 1.
            Default 2.0 (docs/benchmarks.md).
        etr_micro_form (str): the reading of the micro level (docs/algorithm.md, "The family of readings"):
            ``power`` (default): ``clamp(|A_i|) ** alpha``, which narrows the range for ``|A_i| < 1``;
            ``linear``: ``1 + alpha |A_i|``, widens and never narrows; ``tanh``: ``1 + alpha tanh(|A_i|)``,
            widens and saturates at ``1 + alpha``. Needs ``etr_alpha > 0``.
        etr_macro_floor (float): ``lam`` in ``[0, 1]``, the macro weight's floor:
            ``w_g = lam + (1 - lam) (v_g / v_max) ** beta``, so that a skewed or zero-variance group keeps a share
            ``lam`` of the budget. Default 0 (today's ``(v_g / v_max) ** beta``). Needs ``etr_beta > 0``.
        etr_combine (str): how the two levels combine: ``multiply`` (default, ``f = m w``) or ``add``
            (``f = 1 + (m - 1) + (w - 1)``, each level a deviation around the static range). ``add`` needs both
            levels on.
        etr_bounds (str): which clip bounds the factor scales: ``both`` (default; under PPO's min only the upper
            bound binds for ``A > 0`` and only the lower for ``A < 0``), ``upper`` (``eps_high`` only:
            clip-higher-like, elastic room for positive-advantage responses only) or ``lower`` (``eps_low``
            only).
        etr_budget (str): ``computed`` (default: each factor as its formula gives it; the default reading's
            batch-mean range is then *narrower* than GRPO's, docs/algorithm.md) or ``preserve``: the factors of the
            whole training batch rescaled, ``f_i = clamp(s u_i, etr_factor_min, etr_factor_max)``, so that their
            mean over responses with ``A_i != 0`` is 1 — ETR redistributes GRPO's budget instead of growing or
            shrinking it (reads "allocate larger update budgets" as a reallocation). ``s`` is computed in the
            driver from the whole batch (``algorithm.adv_estimator=etr_grpo``, ``python -m etr_verl.main``, which
            copies these coefficients to ``algorithm.etr.budget_preserving_reading``), never per micro-batch.
            Needs ``etr_factor_min < 1 < etr_factor_max`` and a level on.
        etr_macro_source (str): where the group variance comes from. ``driver``: the exact per-group value the
            ``etr_grpo`` estimator computes in the driver from whole groups and sends in the batch's ``returns``
            (:mod:`etr_verl.adapters.macro_channel`); needs ``algorithm.adv_estimator=etr_grpo`` and
            ``python -m etr_verl.main`` (which installs the loss function that reads it). ``advantages``:
            recovered from std-normalised binary-reward GRPO advantages, with a check that fails loudly when
            that assumption does not hold (stock ``verl.trainer.main_ppo``). ``auto`` (default): ``python -m
            etr_verl.main`` resolves it before Ray starts, to ``driver`` with ``etr_grpo`` and to ``advantages``
            otherwise; elsewhere it means ``advantages``.
        etr_on_non_finite (str): what a micro-batch with NaN/inf log-probs, advantages or rollout IS weights at
            valid tokens does (this project; verl's own losses produce a NaN loss there, and verl's optimizer step
            then skips the update). ``skip_update`` (default): the same — the loss is NaN, verl skips that
            optimizer step — plus ``actor/etr/non_finite_tokens`` and a warning with the counts. ``raise``: stop
            at the first (debugging).
        etr_max_consecutive_non_finite (int): with ``skip_update``, this many consecutive micro-batches with
            NaN/inf in one worker are tolerated; the next raises (a run whose every update is skipped is dead).
            Default 8, ``>= 0``.
    """

    loss_mode: str = LOSS_MODE
    etr_alpha: float = 1.0
    etr_beta: float = 0.5
    etr_adv_min: float = 0.0
    etr_adv_max: float = math.inf
    etr_factor_min: float = 0.5
    etr_factor_max: float = 2.0
    etr_micro_form: str = "power"
    etr_macro_floor: float = 0.0
    etr_combine: str = "multiply"
    etr_bounds: str = "both"
    etr_budget: str = "computed"
    etr_macro_source: str = "auto"
    etr_on_non_finite: str = "skip_update"
    etr_max_consecutive_non_finite: int = 8

    def __post_init__(self) -> None:
        for name in COEFFICIENT_FIELDS:  # Hydra's command line hands YAML's `.inf` over as the string ".inf"
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, yaml_float(value, f"actor_rollout_ref.actor.policy_loss.{name}"))
        values = self._coefficient_values()
        prefix = "actor_rollout_ref.actor.policy_loss.etr_"
        validate_coefficients(*(values[name] for name in NUMERIC_COEFFICIENTS), prefix=prefix)
        inert = validate_reading(*(values[name] for name in READING_COEFFICIENTS), prefix=prefix)
        inert += validate_budget(self.etr_budget, self.etr_factor_min, self.etr_factor_max, prefix=prefix)
        for message in inert:
            warnings.warn(message, InertReadingWarning, stacklevel=3)
        if self.etr_on_non_finite not in NON_FINITE_POLICIES:
            raise ETRInputError(
                f"actor_rollout_ref.actor.policy_loss.etr_on_non_finite={self.etr_on_non_finite!r} is not one of "
                f"{NON_FINITE_POLICIES}."
            )
        limit = self.etr_max_consecutive_non_finite
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ETRInputError(
                f"actor_rollout_ref.actor.policy_loss.etr_max_consecutive_non_finite={limit!r} must be an integer >= 0."
            )
        if self.etr_macro_source not in MACRO_SOURCES:
            raise ETRInputError(
                f"actor_rollout_ref.actor.policy_loss.etr_macro_source={self.etr_macro_source!r} is not one of "
                f"{MACRO_SOURCES}."
            )

    def _coefficient_values(self) -> dict[str, Any]:
        """The ``etr_*`` keys as :class:`ElasticityCoefficients` fields (``etr_alpha`` -> ``alpha``, ...)."""
        return {name: getattr(self, f"etr_{name}") for name in COEFFICIENT_NAMES}

    @property
    def coefficients(self) -> ElasticityCoefficients:
        """The ``etr_*`` keys as one :class:`ElasticityCoefficients`, built and validated once per config: the loss
        reads them at every micro-batch, and verl's config fields cannot change after construction."""
        cached = self.__dict__.get("_coefficients")
        if cached is None:
            cached = ElasticityCoefficients(**self._coefficient_values())
            object.__setattr__(self, "_coefficients", cached)  # not a field: BaseConfig's freeze does not apply
        return cached


DEFAULT_POLICY_LOSS_CONFIG = EtrPolicyLossConfig()


def etr_policy_loss_config(policy_loss: Any) -> EtrPolicyLossConfig:
    """The ETR config from ``actor.policy_loss``: itself when it is an :class:`EtrPolicyLossConfig`, else ETR's
    defaults (``loss_mode=etr`` set on verl's plain ``PolicyLossConfig``: the one-flag switch)."""
    if isinstance(policy_loss, EtrPolicyLossConfig):
        return policy_loss
    unknown = [k for k in _keys(policy_loss) if k.startswith("etr_")]
    if unknown:
        raise ETRInputError(
            f"policy_loss has ETR keys {unknown} but is not an EtrPolicyLossConfig; set "
            f"actor_rollout_ref.actor.policy_loss._target_={POLICY_LOSS_TARGET}."
        )
    return DEFAULT_POLICY_LOSS_CONFIG


@dataclass(frozen=True)
class EtrAlgorithmConfig:
    """The ``algorithm.etr`` block: what the driver needs to compute the macro signal from whole groups.

    Args:
        reward_low (float): lowest outcome score the reward function returns. Default 0.0 (0/1 graders such as
            verl's ``gsm8k``/``math``); ``-1.0`` for ``math_dapo`` (DAPO's overlong penalty can go lower).
        reward_high (float): highest outcome score. Default 1.0.
        on_out_of_range (str): an outcome score outside ``[reward_low, reward_high]`` met mid-run (a penalty that
            first appears at step 900, say). ``clamp`` (default): the macro signal is computed from the scores
            clamped into the range (the advantages are not touched), with a warning naming the count; the run
            goes on. ``raise``: stop with the fix named.
        budget_preserving_reading (dict): written by ``python -m etr_verl.main``, not by hand: with
            ``policy_loss.etr_budget=preserve``, the loss's elasticity coefficients (the fields of
            :class:`etr_verl.elastic.ElasticityCoefficients`), so that ``etr_grpo`` computes the budget-preserving
            factors from the whole batch (verl hands an estimator the ``algorithm`` block only). Its factors then
            travel in ``returns`` instead of the variance ratios (:mod:`etr_verl.adapters.macro_channel`).
            Default None.
    """

    reward_low: float = 0.0
    reward_high: float = 1.0
    on_out_of_range: str = "clamp"
    budget_preserving_reading: Optional[ElasticityCoefficients] = None

    def __post_init__(self) -> None:
        for name in ("reward_low", "reward_high"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ETRInputError(f"algorithm.etr.{name}={value!r} must be a finite number.")
        if self.on_out_of_range not in ("clamp", "raise"):
            raise ETRInputError(f"algorithm.etr.on_out_of_range={self.on_out_of_range!r} is not one of "
                                "('clamp', 'raise').")
        if not self.reward_high > self.reward_low:
            raise ETRInputError(
                f"algorithm.etr.reward_high={self.reward_high!r} must be > algorithm.etr.reward_low="
                f"{self.reward_low!r}."
            )

    @classmethod
    def from_algorithm_config(cls, algorithm: Any) -> "EtrAlgorithmConfig":
        """Read ``algorithm.etr`` (a DictConfig, dict or None); unknown keys are an error, not ignored."""
        block = algorithm.get("etr", None) if algorithm is not None else None
        if block is None:
            return cls()
        values = dict(_items(block))
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ETRInputError(f"algorithm.etr has unknown key(s) {unknown}; known keys: {sorted(allowed)}.")
        numbers = {"reward_low", "reward_high"}
        reading = values.pop("budget_preserving_reading", None)
        return cls(
            **{k: (_number(v, f"algorithm.etr.{k}") if k in numbers else v) for k, v in values.items()},
            budget_preserving_reading=None if reading is None else _budget_preserving_reading(reading),
        )


def driver_copy_of_reading(coefficients: ElasticityCoefficients) -> dict[str, Any]:
    """``algorithm.etr.budget_preserving_reading`` for a loss's coefficients (the fields, by name)."""
    return asdict(coefficients)


def _budget_preserving_reading(block: Any) -> ElasticityCoefficients:
    """``algorithm.etr.budget_preserving_reading`` as coefficients; a key that is not a coefficient is an error."""
    key = "algorithm.etr.budget_preserving_reading"
    values = dict(_items(block))
    allowed = {f.name for f in fields(ElasticityCoefficients)}
    unknown = sorted(set(values) - allowed)
    if unknown or not values:
        raise ETRInputError(f"{key} has unknown key(s) {unknown}; it is written by python -m etr_verl.main from "
                            "actor_rollout_ref.actor.policy_loss (etr_budget=preserve), not by hand.")
    numbers = set(NUMERIC_COEFFICIENTS) | {"macro_floor"}
    reading = ElasticityCoefficients(
        **{k: (_number(v, f"{key}.{k}") if k in numbers else v) for k, v in values.items()})
    if reading.budget != "preserve":
        raise ETRInputError(f"{key}.budget={reading.budget!r}: the driver copy is only written for 'preserve'.")
    return reading


def _number(value: Any, key: str) -> float:
    if isinstance(value, str):
        return yaml_float(value, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ETRInputError(f"{key}={value!r} must be a finite number.") from None


def _keys(obj: Any) -> list[str]:
    return [k for k, _ in _items(obj)]


def _items(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        return list(obj.items())
    try:  # DictConfig
        return list(obj.items())
    except AttributeError:
        return []

