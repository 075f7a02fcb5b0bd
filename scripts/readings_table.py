"""The table of docs/algorithm.md, "The family of readings": for a group of G = 8 pass/fail responses with k
successes, the elastic factor on the bound that binds, for each ETR preset (etr_verl/hydra_configs/algo/etr*.yaml).

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

from etr_verl.elastic import ElasticityCoefficients, elastic_factor, group_variance_ratio

PRESETS = Path(__file__).resolve().parents[1] / "etr_verl" / "hydra_configs" / "algo"
GROUP_SIZE = 8
KEYS = {"etr_alpha": "alpha", "etr_beta": "beta", "etr_adv_min": "adv_min", "etr_adv_max": "adv_max",
        "etr_factor_min": "factor_min", "etr_factor_max": "factor_max", "etr_micro_form": "micro_form",
        "etr_macro_floor": "macro_floor", "etr_combine": "combine", "etr_bounds": "bounds"}


def preset_coefficients(name: str) -> ElasticityCoefficients:
    """The elasticity coefficients an ETR preset sets."""
    preset = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    keys = preset["actor_rollout_ref"]["actor"]["policy_loss"]
    values = {}
    for key, field in KEYS.items():
        value = keys[key]
        values[field] = math.inf if value == ".inf" else value
    return ElasticityCoefficients(**values)


def group_factors(coeffs: ElasticityCoefficients, successes: int, group_size: int = GROUP_SIZE):
    """(factor of a success, factor of a failure) on the bound that binds for it; None where the group has none."""
    scores = torch.tensor([1.0] * successes + [0.0] * (group_size - successes), dtype=torch.float64)
    advantages = (scores - scores.mean()) / (scores.std() + 1e-6)
    ratio = group_variance_ratio(scores, torch.zeros(group_size, dtype=torch.long))
    factor = elastic_factor(advantages.abs().float(), ratio, coeffs)
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
