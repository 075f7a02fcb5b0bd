"""The budget-preserving reading (``etr_budget=preserve``, docs/algorithm.md section 2b): the factors of a whole
batch rescaled so that their mean over responses with a learning signal is 1. Its math (mean, clamps, order, the
exact-at-zero case, values worked by hand), its batch statistic computed once in the driver and carried whole to
every micro-batch and data-parallel shard on verl's real paths, its channel that cannot be misread, and its
configuration checks before Ray starts. Parity with ``vanilla`` when off: tests/test_readings.py (every preset);
one real trainer step: tests/test_trainer_e2e.py."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from etr_testkit import actor_config, binary_groups, load_script, loss_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict
from test_verl_paths import _padded_proto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils import tensordict_utils as tu

import etr_verl.plugin  # noqa: F401  (registers, as the verl.plugins entry point does in every process)
from etr_verl import elastic
from etr_verl.adapters import macro_channel
from etr_verl.adapters.loss_function import EtrLossFunction, etr_loss_function
from etr_verl.adapters.policy_loss import compute_policy_loss_etr, driver_budget_factors, driver_macro_signal
from etr_verl.config import EtrAlgorithmConfig, EtrPolicyLossConfig, InertReadingWarning, driver_copy_of_reading

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
table = load_script(ROOT / "scripts" / "readings_table.py", "readings_table")
PRESERVE = dict(alpha=1.0, beta=0.5, factor_min=0.5, factor_max=2.0, budget="preserve")


def _budget(factor, informative):
    return float(factor[informative].double().mean())


# ------------------------------------------------------------------------------------------------ the math


@settings(max_examples=200, deadline=None)
@given(u=st.lists(st.floats(1e-3, 50.0), min_size=1, max_size=64), f_min=st.floats(0.0, 0.99),
       f_max=st.floats(1.01, 4.0))
def test_the_scale_brings_the_mean_factor_to_one_inside_the_clamps_keeping_the_order(u, f_min, f_max):
    unclamped = torch.tensor(u, dtype=torch.float64)
    scale = elastic.budget_scale(unclamped, f_min, f_max)
    factor = (scale * unclamped).clamp(f_min, f_max)
    assert float(factor.mean()) == pytest.approx(1.0, abs=1e-9)  # every u_i > 0: the budget is reachable
    order = unclamped.argsort()
    assert bool((factor[order][1:] >= factor[order][:-1]).all())  # a larger u never gets a smaller range
    between = (factor > f_min) & (factor < f_max)  # unclamped factors keep their ratios: one common scale
    torch.testing.assert_close(factor[between], scale * unclamped[between], rtol=1e-12, atol=0)


@settings(max_examples=100, deadline=None)
@given(coeffs=st.builds(
    elastic.ElasticityCoefficients, alpha=st.floats(0.05, 2.0), beta=st.floats(0.05, 2.0),
    factor_min=st.floats(0.05, 0.95), factor_max=st.floats(1.05, 4.0),
    micro_form=st.sampled_from(elastic.MICRO_FORMS), macro_floor=st.floats(0.0, 1.0),
    combine=st.just("multiply"), bounds=st.sampled_from(elastic.MOVING_BOUNDS), budget=st.just("preserve")),
    seed=st.integers(0, 2**16))
def test_budget_preserving_factors_of_real_groups_average_one_and_stay_clamped(coeffs, seed):
    """Binary groups of 8 with random pass rates, GRPO advantages, the driver's variance ratios: the mean factor
    over responses with A != 0 is the static budget, whatever the reading (fp32 result: 1e-6)."""
    passed, gids = binary_groups(12, 8, torch.Generator().manual_seed(seed))
    magnitude = table_advantages(passed, gids).abs()
    informative = magnitude > 0
    factor = elastic.budget_preserving_factor(magnitude, elastic.group_variance_ratio(passed, gids), informative,
                                              coeffs)
    assert factor.dtype == torch.float32
    assert bool((factor >= np.float32(coeffs.factor_min)).all()) and bool((factor <= coeffs.factor_max).all())
    if informative.any():
        assert _budget(factor, informative) == pytest.approx(1.0, abs=1e-6)


def table_advantages(scores, gids):
    from etr_testkit import grpo_advantages

    return grpo_advantages(scores, gids)


def test_uniform_factors_become_exactly_one():
    """Exact at zero, as every reading: alpha = beta = 0 gives u_i = 1, hence s = 1 and f_i = 1 bit for bit; any
    uniform u_i = c gives f_i = 1 (the closed-form step within the bisection's bracket)."""
    coeffs = elastic.ElasticityCoefficients(**{**PRESERVE, "alpha": 0.0, "beta": 0.0})
    magnitude = torch.rand(40, generator=torch.Generator().manual_seed(0)) * 3
    factor = elastic.budget_preserving_factor(magnitude, torch.rand(40), magnitude > 0, coeffs)
    assert torch.equal(factor, torch.ones(40))
    assert elastic.budget_scale(torch.full((10,), 0.25, dtype=torch.float64), 0.5, 2.0) == 4.0


def test_the_budget_worked_by_hand():
    """Two groups of 8: k = 1 and k = 7. The default reading's u (docs/algorithm.md, worked values): the rare
    outcome 2.474874 * sqrt(0.4375) = 1.636976, each common one 0.353553 * 0.661438 = 0.233853. A mean of 1 over 16
    responses with the two rare ones at the ceiling 2: the 14 others share 16 - 4 = 12, 6/7 each (s = 3.6653,
    which indeed puts 1.636976 s = 6.0 above the ceiling)."""
    coeffs = elastic.ElasticityCoefficients(**PRESERVE)
    passed = torch.tensor([1.0] + [0.0] * 7 + [0.0] + [1.0] * 7)
    gids = torch.arange(2).repeat_interleave(8)
    magnitude = table_advantages(passed, gids).abs()
    factor = elastic.budget_preserving_factor(magnitude, elastic.group_variance_ratio(passed, gids),
                                              magnitude > 0, coeffs)
    rare = torch.tensor([0, 8])
    common = torch.tensor([i for i in range(16) if i not in (0, 8)])
    assert factor[rare].tolist() == [2.0, 2.0]
    torch.testing.assert_close(factor[common], torch.full((14,), 6 / 7), rtol=1e-6, atol=0)


def test_the_table_row_spends_the_static_budget():
    """The algorithm document's etr_budget row: over its reference batch (one group per k), the informative
    factors average 1, while the default reading's average less (it narrows GRPO's range on average)."""
    scores, gids, magnitude = table.reference_batch()
    informative = magnitude > 0
    budget = table.batch_factors(table.preset_coefficients("etr_budget"))
    computed = table.batch_factors(table.preset_coefficients("etr"))
    assert _budget(budget.reshape(-1), informative) == pytest.approx(1.0, abs=1e-6)
    assert _budget(computed.reshape(-1), informative) < 0.9


def test_an_unreachable_budget_gives_the_closest_factors():
    """combine=add can make u_i <= 0 (always at the floor): when too many are, even every other factor at the
    ceiling cannot make the mean 1; the scale then puts them at the ceiling, the closest to the budget."""
    u = torch.tensor([-0.5, -0.2, 0.0, 0.3], dtype=torch.float64)
    scale = elastic.budget_scale(u, 0.5, 1.2)
    assert (scale * u).clamp(0.5, 1.2).tolist() == [0.5, 0.5, 0.5, 1.2]


# ------------------------------------------------------------------------------------------------ the driver


def _algorithm(coeffs):
    return {"norm_adv_by_std_in_grpo": True, "etr": {"budget_preserving_reading": driver_copy_of_reading(coeffs)}}


def test_the_driver_computes_the_factors_from_the_whole_batch_and_every_shard_reads_its_own():
    """etr_grpo with the driver copy of the reading: ``returns`` carries -f_i, the factors of the whole batch
    (their informative mean is 1). Every data-parallel shard and micro-batch, on the legacy (dense) and V1
    (jagged) layouts, reads exactly its rows' whole-batch factors; the budget of a shard alone would differ."""
    from verl.workers.utils.padding import response_to_nested

    coeffs = elastic.ElasticityCoefficients(**PRESERVE)
    gen = torch.Generator().manual_seed(5)
    passed, gids = binary_groups(8, 6, gen)
    lengths = torch.randint(1, 9, (48,), generator=gen).tolist()
    algo = _algorithm(coeffs)
    legacy = compute_advantage(_padded_proto(passed, gids, lengths), adv_estimator="etr_grpo", config=algo)
    magnitude = elastic.response_advantage_magnitude(legacy.batch["advantages"], legacy.batch["response_mask"])
    expected = elastic.budget_preserving_factor(magnitude, elastic.group_variance_ratio(passed, gids),
                                                magnitude > 0, coeffs)
    assert bool((legacy.batch["returns"] <= 0).all())  # factors travel negated
    mask = legacy.batch["response_mask"]
    nested_mask = torch.nested.as_nested_tensor([mask[i, :n] for i, n in enumerate(lengths)], layout=torch.jagged)
    batches = {
        "dense": TensorDict({"returns": legacy.batch["returns"]}, batch_size=[48]),
        "jagged": TensorDict({"returns": response_to_nested(legacy.batch["returns"], nested_mask)}, batch_size=[48]),
    }
    for batch in batches.values():
        assert torch.equal(macro_channel.read(batch, macro_channel.FACTOR, coeffs.factor_max), expected)
    if magnitude.gt(0).any():
        assert _budget(expected, magnitude > 0) == pytest.approx(1.0, abs=1e-6)
    shard_budgets = []
    for rows in torch.randperm(48, generator=gen).split(12):  # 4 ranks, groups split across them
        for batch in batches.values():
            read = macro_channel.read(tu.index_select_tensor_dict(batch, rows), macro_channel.FACTOR, 2.0)
            assert torch.equal(read, expected[rows])
        own = elastic.budget_preserving_factor(magnitude[rows], elastic.group_variance_ratio(passed, gids)[rows],
                                               magnitude[rows] > 0, coeffs)
        shard_budgets.append(torch.equal(own, expected[rows]))
    assert not all(shard_budgets)  # a per-shard statistic would have given other factors


@pytest.mark.skipif(importlib.util.find_spec("verl.trainer.ppo.v1") is None, reason="verl 0.8.0: no V1 trainer")
def test_the_v1_trainers_advantage_path_carries_the_same_factors():
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    coeffs = elastic.ElasticityCoefficients(**PRESERVE)
    passed, gids = binary_groups(5, 4, torch.Generator().manual_seed(8), successes=[1, 2, 3, 0, 1])
    lengths = [3, 2, 4, 1] * 5
    algo = _algorithm(coeffs)
    legacy = compute_advantage(_padded_proto(passed, gids, lengths), adv_estimator="etr_grpo", config=algo)
    keys = [f"prompt-{int(g)}_0_{i}" for i, g in enumerate(gids)]
    v1 = compute_advantage_for_multi_trajectories(_padded_proto(passed, gids, lengths), batch_keys=keys,
                                                  adv_estimator="etr_grpo", num_repeat=4, config=algo)
    assert torch.equal(v1.batch["returns"], legacy.batch["returns"])


def test_the_loss_is_micro_batch_invariant_with_the_drivers_factors():
    """Gradient accumulation: the loss of the whole batch equals the sum of its micro-batches' losses (verl's
    global token count), because every micro-batch uses the whole batch's factors."""
    coeffs = elastic.ElasticityCoefficients(**PRESERVE)
    gen = torch.Generator().manual_seed(3)
    passed, gids = binary_groups(4, 4, gen, successes=[1, 2, 3, 1])
    batch = loss_batch(16, 12, gen, response_advantages=table_advantages(passed, gids))
    magnitude = elastic.response_advantage_magnitude(batch["advantages"], batch["response_mask"])
    factor = elastic.budget_preserving_factor(magnitude, elastic.group_variance_ratio(passed, gids), magnitude > 0,
                                              coeffs)
    config = actor_config(rollout_n=4, etr_budget="preserve", etr_macro_source="driver")
    config.global_batch_info.update(dp_size=1, batch_num_tokens=int(batch["response_mask"].sum()),
                                    global_batch_size=16)

    def loss(rows):
        with driver_budget_factors(factor[rows]):
            value, metrics = compute_policy_loss_etr(
                old_log_prob=batch["old_log_prob"][rows], log_prob=batch["log_prob"][rows],
                advantages=batch["advantages"][rows], response_mask=batch["response_mask"][rows],
                loss_agg_mode="token-mean", config=config)
        return value, metrics

    whole, metrics = loss(torch.arange(16))
    parts = sum(loss(rows)[0] for rows in torch.arange(16).split(5))
    torch.testing.assert_close(parts, whole, rtol=1e-6, atol=1e-7)
    assert metrics["actor/etr/macro_from_driver"] == 1.0
    assert metrics["actor/etr/factor_max"] == float(factor.max())  # the loss used the driver's factors


# ------------------------------------------------------------------------------------------------ the channel


def test_the_channel_never_reads_one_kind_as_the_other():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    factors = torch.tensor([1.5, 0.5, 0.0])
    carried = macro_channel.encode_factors(factors, elastic.response_has_tokens(mask))
    assert torch.equal(macro_channel.decode(carried, macro_channel.FACTOR, 2.0), factors)
    with pytest.raises(elastic.ETRInputError, match="carries budget-preserving factors"):
        macro_channel.decode(carried)
    ratios = macro_channel.encode(torch.tensor([0.75, 1.0, 0.0]), elastic.response_has_tokens(mask))
    with pytest.raises(elastic.ETRInputError, match="not budget-preserving factors"):
        macro_channel.decode(ratios, macro_channel.FACTOR, 2.0)
    with pytest.raises(elastic.ETRInputError, match="above this loss's policy_loss.etr_factor_max=1.2"):
        macro_channel.decode(carried, macro_channel.FACTOR, 1.2)


def test_the_worker_loss_function_reads_factors_for_a_preserving_loss():
    config = actor_config(rollout_n=4, etr_budget="preserve", etr_macro_source="driver")
    loss_fn = etr_loss_function(config)
    assert isinstance(loss_fn, EtrLossFunction) and loss_fn.channel == macro_channel.FACTOR
    micro_only = actor_config(rollout_n=4, etr_beta=0.0, etr_budget="preserve")  # the budget still needs the driver
    assert etr_loss_function(micro_only).channel == macro_channel.FACTOR


def test_a_preserving_loss_without_the_drivers_factors_names_the_fix():
    batch = loss_batch(4, 6, torch.Generator().manual_seed(0))
    config = actor_config(rollout_n=4, etr_budget="preserve")
    with driver_macro_signal(torch.rand(4)), pytest.raises(elastic.ETRInputError, match="python -m etr_verl.main"):
        compute_policy_loss_etr(batch["old_log_prob"], batch["log_prob"], batch["advantages"],
                                batch["response_mask"], config=config)


# ------------------------------------------------------------------------------------------------ configuration


def test_bad_and_inert_budget_keys_are_named():
    with pytest.raises(elastic.ETRInputError, match=r"etr_budget='fixed' is not one of \('computed', 'preserve'\)"):
        EtrPolicyLossConfig(etr_budget="fixed")
    with pytest.raises(elastic.ETRInputError, match="etr_factor_min=1.2.*out of reach"):
        EtrPolicyLossConfig(etr_budget="preserve", etr_factor_min=1.2, etr_factor_max=2.0)
    with pytest.warns(InertReadingWarning, match="etr_factor_min=1.0.*makes every factor 1"):
        EtrPolicyLossConfig(etr_budget="preserve", etr_factor_min=1.0)
    with pytest.warns(InertReadingWarning, match="etr_budget='preserve' does nothing with both levels off"):
        EtrPolicyLossConfig(etr_budget="preserve", etr_alpha=0.0, etr_beta=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InertReadingWarning)
        EtrPolicyLossConfig(etr_budget="preserve")


def test_the_driver_copy_is_read_and_checked():
    coeffs = elastic.ElasticityCoefficients(**PRESERVE)
    block = {"etr": {"budget_preserving_reading": {**driver_copy_of_reading(coeffs), "adv_max": ".inf"}}}
    assert EtrAlgorithmConfig.from_algorithm_config(block).budget_preserving_reading == coeffs
    with pytest.raises(elastic.ETRInputError, match="unknown key.*'alfa'"):
        EtrAlgorithmConfig.from_algorithm_config({"etr": {"budget_preserving_reading": {"alfa": 1.0}}})
    computed = {**driver_copy_of_reading(coeffs), "budget": "computed"}
    with pytest.raises(elastic.ETRInputError, match="only written for 'preserve'"):
        EtrAlgorithmConfig.from_algorithm_config({"etr": {"budget_preserving_reading": computed}})
