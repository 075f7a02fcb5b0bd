"""The table of docs/algorithm.md, "The family of readings": for a group of G = 8 pass/fail responses with k
successes, the elastic factor on the bound that binds, for each ETR preset (etr_verl/hydra_configs/algo/etr*.yaml).

A budget-preserving reading (``etr_budget: preserve``) rescales the factors of a whole batch, so its factors depend
on the batch: the table computes them over the reference batch of one group for every k = 0..G (the mean factor
over its informative responses is then 1).

    python scripts/readings_table.py            # prints the markdown table (docs/algorithm.md embeds it verbatim)

Advantages are GRPO's, as ``etr_grpo`` computes them: ``A_i = (r_i - mean_g) / (std_g + 1e-6)`` with the unbiased
std; the macro signal is :func:`etr_verl.elastic.group_variance_ratio` (``4 p (1 - p)``); the factor is
:func:`etr_verl.elastic.elastic_factor`. Under PPO's min, the upper bound binds for ``A > 0`` (successes) and the
lower for ``A < 0`` (failures): a bound the reading keeps static has factor 1 there. Pure torch; no verl import.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

from etr_verl.elastic import (
    ElasticityCoefficients,
    budget_preserving_factor,
    elastic_factor,
    group_variance_ratio,
)

PRESETS = Path(__file__).resolve().parents[1] / "etr_verl" / "hydra_configs" / "algo"
GROUP_SIZE = 8
KEYS = {"etr_alpha": "alpha", "etr_beta": "beta", "etr_adv_min": "adv_min", "etr_adv_max": "adv_max",
        "etr_factor_min": "factor_min", "etr_factor_max": "factor_max", "etr_micro_form": "micro_form",
        "etr_macro_floor": "macro_floor", "etr_combine": "combine", "etr_bounds": "bounds",
        "etr_budget": "budget"}


def preset_coefficients(name: str) -> ElasticityCoefficients:
    """The elasticity coefficients an ETR preset sets."""
    preset = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    keys = preset["actor_rollout_ref"]["actor"]["policy_loss"]
    values = {}
    for key, field in KEYS.items():
        value = keys[key]
        values[field] = math.inf if value == ".inf" else value
    return ElasticityCoefficients(**values)


def reference_batch(group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One group of ``group_size`` pass/fail responses for every success count k = 0..G, successes first in each:
    ``(scores, group ids, |A_i|)``, each ``((G + 1) G,)``, with GRPO's advantages as ``etr_grpo`` computes them."""
    scores = torch.tensor([[1.0] * k + [0.0] * (group_size - k) for k in range(group_size + 1)], dtype=torch.float64)
    advantages = (scores - scores.mean(dim=1, keepdim=True)) / (scores.std(dim=1, keepdim=True) + 1e-6)
    group = torch.arange(group_size + 1).repeat_interleave(group_size)
    return scores.reshape(-1), group, advantages.abs().float().reshape(-1)


def batch_factors(coeffs: ElasticityCoefficients, group_size: int = GROUP_SIZE) -> torch.Tensor:
    """``(G + 1, G)`` the factors of the reference batch (row k: the group with k successes, successes first)."""
    scores, group, magnitude = reference_batch(group_size)
    ratio = group_variance_ratio(scores, group)
    if coeffs.budget == "preserve":
        factor = budget_preserving_factor(magnitude, ratio, magnitude > 0, coeffs)
    else:
        factor = elastic_factor(magnitude, ratio, coeffs)
    return factor.reshape(group_size + 1, group_size)


def group_factors(coeffs: ElasticityCoefficients, successes: int, group_size: int = GROUP_SIZE):
    """(factor of a success, factor of a failure) on the bound that binds for it, in the reference batch; None
    where the group has none."""
    factor = batch_factors(coeffs, group_size)[successes]
    success_moves = coeffs.bounds in ("both", "upper")
    failure_moves = coeffs.bounds in ("both", "lower")
    success = float(factor[0]) if success_moves else 1.0
    failure = float(factor[-1]) if failure_moves else 1.0
    return (success if successes > 0 else None), (failure if successes < group_size else None)


def reading_presets() -> list[str]:
    return ["etr"] + sorted(p.stem for p in PRESETS.glob("etr_*.yaml"))


def markdown_table(group_size: int = GROUP_SIZE) -> str:
    header = "| preset | " + " | ".join(f"k={k}" for k in range(group_size + 1)) + " |"
    rule = "|---|" + "---|" * (group_size + 1)
    rows = [header, rule]
    for name in reading_presets():
        coeffs = preset_coefficients(name)
        cells = []
        for k in range(group_size + 1):
            success, failure = group_factors(coeffs, k, group_size)
            cells.append(" / ".join("–" if f is None else f"{f:.2f}" for f in (success, failure)))
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
