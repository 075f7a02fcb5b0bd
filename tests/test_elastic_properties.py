"""ETR_SPEC's properties of the elastic factor, the macro signal and the loss, on random shapes and groups."""

from __future__ import annotations

import math

import pytest
import torch
from etr_testkit import AGG_MODES, actor_config, binary_groups, grpo_advantages, loss_batch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from etr_verl import elastic
from etr_verl.adapters.policy_loss import compute_policy_loss_etr, driver_macro_signal

coefficients = st.builds(
    lambda a, b, lo, width, amin, awidth: elastic.ElasticityCoefficients(
        alpha=a, beta=b, adv_min=amin, adv_max=amin + awidth, factor_min=lo, factor_max=lo + width
    ),
    a=st.floats(0, 3),
    b=st.floats(0, 3),
    lo=st.floats(0, 2),
    width=st.floats(0, 4),
    amin=st.floats(0, 1),
    awidth=st.one_of(st.floats(0, 10), st.just(math.inf)),
)


@settings(max_examples=200, deadline=None)
@given(coeffs=coefficients, mags=st.lists(st.floats(0, 50), min_size=2, max_size=30), p=st.floats(0, 1))
def test_factor_monotone_in_advantage_and_bounded(coeffs, mags, p):
    mags = torch.tensor(sorted(mags))
    ratio = torch.full_like(mags, 4 * p * (1 - p))
    f = elastic.elastic_factor(mags, ratio, coeffs)
    assert bool((f[1:] >= f[:-1]).all()), "non-decreasing in |A|"
    assert bool((f >= coeffs.factor_min).all()) and bool((f <= coeffs.factor_max).all())
    assert bool(torch.isfinite(f).all())


@settings(max_examples=200, deadline=None)
@given(coeffs=coefficients, mag=st.floats(0, 20), group_size=st.integers(2, 64), data=st.data())
def test_factor_symmetric_in_pass_rate_and_maximal_at_half(coeffs, mag, group_size, data):
    """A group with k of G passes and one with G - k get the same factor; an even split gets the largest.

    Pass rates are drawn as they occur (k / G) and go through ``group_variance_ratio``: drawing p from the
    reals made ``1 - p`` round to 1 in float64 for p near 1e-38, a property of the test, not of ETR.
    """
    passes = data.draw(st.integers(0, group_size), label="passes")

    def factor(k):
        scores = torch.cat([torch.ones(k), torch.zeros(group_size - k)])
        ratio = elastic.group_variance_ratio(scores, torch.zeros(group_size, dtype=torch.long))
        return elastic.elastic_factor(torch.tensor([mag]), ratio[:1], coeffs).item()

    assert factor(passes) == pytest.approx(factor(group_size - passes), rel=1e-6, abs=1e-7)
    assert factor(group_size // 2) >= factor(passes) - 1e-7


def test_macro_weight_strictly_maximal_at_half_when_beta_positive():
    coeffs = elastic.ElasticityCoefficients(alpha=0.0, beta=0.5, factor_min=0.0, factor_max=10.0)
    p = torch.linspace(0, 1, 101)
    w = elastic.macro_weight(4 * p * (1 - p), coeffs)
    assert int(w.argmax()) == 50 and w[50] == 1.0
    assert bool((w[:50] < 1).all()) and bool((w[51:] < 1).all())


@settings(max_examples=60, deadline=None)
@given(
    n_groups=st.integers(1, 12),
    group_size=st.integers(2, 9),
    seed=st.integers(0, 2**16),
    two_valued=st.sampled_from([(0.0, 1.0), (-1.0, 1.0)]),
)
def test_variance_ratio_is_4p1mp_for_pass_fail_and_invariant_to_order(n_groups, group_size, seed, two_valued):
    gen = torch.Generator().manual_seed(seed)
    passed, gids = binary_groups(n_groups, group_size, gen)
    low, high = two_valued
    scores = low + (high - low) * passed
    ratio = elastic.group_variance_ratio(scores, gids, reward_low=low, reward_high=high)
    p = passed.view(n_groups, group_size).mean(1).repeat_interleave(group_size).double()
    torch.testing.assert_close(ratio.double(), 4 * p * (1 - p), rtol=1e-6, atol=1e-7)
    perm = torch.randperm(scores.numel(), generator=gen)
    shuffled = elastic.group_variance_ratio(scores[perm], gids[perm] * 7 + 3, reward_low=low, reward_high=high)
    assert torch.equal(shuffled, ratio[perm])


def _micro_batched_loss(batch, ratio, config, splits, dp_size=1):
    """Sum of per-micro-batch losses and the concatenated gradients, as verl's gradient accumulation does."""
    total, grads = 0.0, []
    for rows in splits:
        sub = {k: v[rows] for k, v in batch.items()}
        log_prob = sub["log_prob"].clone().requires_grad_(True)
        with driver_macro_signal(ratio[rows]):
            loss, _ = compute_policy_loss_etr(
                sub["old_log_prob"], log_prob, sub["advantages"], sub["response_mask"],
                config.loss_agg_mode, config, sub["rollout_is_weights"],
            )
        (g,) = torch.autograd.grad(loss, log_prob)
        total = total + loss.detach() / dp_size
        grads.append(g / dp_size)
    order = torch.cat([torch.as_tensor(r) for r in splits]).argsort()
    return total, torch.cat(grads)[order]


@settings(max_examples=30, deadline=None)
@given(
    n_groups=st.integers(1, 6),
    group_size=st.integers(2, 6),
    seed=st.integers(0, 2**16),
    n_splits=st.integers(1, 5),
    agg=st.sampled_from([m for m in AGG_MODES if m != "seq-mean-token-sum-norm"]),
)
def test_micro_batch_and_data_parallel_invariance(n_groups, group_size, seed, n_splits, agg):
    """The macro signal comes from whole groups in the driver, so splitting groups across micro-batches (gradient
    accumulation) or ranks (dp, gradients averaged) changes neither the loss nor the gradient."""
    gen = torch.Generator().manual_seed(seed)
    passed, gids = binary_groups(n_groups, group_size, gen)
    bs = passed.numel()
    assume(bs >= n_splits)
    adv = grpo_advantages(passed, gids)
    batch = loss_batch(bs, 10, gen, response_advantages=adv)
    ratio = elastic.group_variance_ratio(passed, gids)
    config = actor_config(loss_agg_mode=agg, etr_alpha=1.0, etr_beta=0.5, etr_factor_min=0.25, etr_factor_max=3.0)
    info = {"batch_num_tokens": int(batch["response_mask"].sum()), "global_batch_size": bs, "loss_scale_factor": None}

    config.global_batch_info.update(dp_size=1, **info)
    whole, whole_grad = _micro_batched_loss(batch, ratio, config, [torch.arange(bs)])
    perm = torch.randperm(bs, generator=gen)
    splits = [chunk for chunk in torch.tensor_split(perm, n_splits)]
    accumulated, acc_grad = _micro_batched_loss(batch, ratio, config, splits)
    torch.testing.assert_close(accumulated, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(acc_grad, whole_grad, rtol=1e-5, atol=1e-7)

    # data parallel: each rank's loss is scaled by dp_size, and the all-reduce averages gradients
    config.global_batch_info.update(dp_size=n_splits, **info)
    dp_loss, dp_grad = _micro_batched_loss(batch, ratio, config, splits, dp_size=n_splits)
    torch.testing.assert_close(dp_loss, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dp_grad, whole_grad, rtol=1e-5, atol=1e-7)


def test_micro_batch_estimate_would_differ():
    """Why the signal must come from the driver: re-estimating a group's variance from the part of it that sits
    in one micro-batch gives other values (so a micro-batch estimate is not an implementation choice)."""
    passed = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    gids = torch.zeros(8, dtype=torch.long)
    whole = elastic.group_variance_ratio(passed, gids)
    half = elastic.group_variance_ratio(passed[:4], gids[:4])
    assert whole[0].item() == pytest.approx(4 * 3 / 8 * 5 / 8)
    assert half[0].item() == pytest.approx(4 * 1 / 4 * 3 / 4)


@settings(max_examples=60, deadline=None)
@given(n_groups=st.integers(1, 10), group_size=st.integers(2, 16), seed=st.integers(0, 2**16), signed=st.booleans())
def test_fallback_recovers_the_driver_signal_for_binary_rewards(n_groups, group_size, seed, signed):
    gen = torch.Generator().manual_seed(seed)
    passed, gids = binary_groups(n_groups, group_size, gen)
    scores = 2 * passed - 1 if signed else passed  # math_dapo's +-1 gives the same normalised advantages
    adv = grpo_advantages(scores, gids)
    batch = loss_batch(passed.numel(), 6, gen, response_advantages=adv)
    recovered = elastic.variance_ratio_from_binary_advantages(batch["advantages"], batch["response_mask"], group_size)
    driver = elastic.group_variance_ratio(passed, gids)
    torch.testing.assert_close(recovered, driver, rtol=1e-6, atol=1e-7)


def test_factor_is_detached_from_the_graph():
    gen = torch.Generator().manual_seed(0)
    batch = loss_batch(6, 5, gen)
    adv = batch["advantages"].clone().requires_grad_(True)
    f = elastic.elastic_factor(elastic.response_advantage_magnitude(adv, batch["response_mask"]), None,
                               elastic.ElasticityCoefficients(alpha=1.0, factor_min=0.0, factor_max=5.0))
    assert not f.requires_grad and f.dtype == torch.float32
    lo, hi = elastic.clip_bounds(f, 0.2, 0.28, torch.bfloat16)
    assert lo.dtype == hi.dtype == torch.bfloat16 and not lo.requires_grad


def test_bounds_follow_the_factor_and_change_the_loss():
    """With elasticity on, bounds are eps * f per response, the surrogate clips at those bounds, and the loss
    differs from vanilla exactly where tokens sit between the static and the elastic bounds."""
    ratio_values = torch.tensor([[0.7, 1.25, 1.5]])  # one response, three tokens
    old = torch.zeros(1, 3)
    new = ratio_values.log()
    adv = torch.ones(1, 3)
    lower, upper = elastic.clip_bounds(torch.tensor([2.0]), 0.2, 0.28, torch.float32)
    assert lower.item() == pytest.approx(0.6) and upper.item() == pytest.approx(1.56)
    terms = elastic.elastic_clipped_surrogate(old, new, adv, lower, upper, 3.0)
    assert terms.clipped().tolist() == [[False, False, False]]  # 1.5 < 1.56: unclipped at f = 2
    lower1, upper1 = elastic.clip_bounds(torch.tensor([1.0]), 0.2, 0.28, torch.float32)
    terms1 = elastic.elastic_clipped_surrogate(old, new, adv, lower1, upper1, 3.0)
    assert terms1.clipped().tolist() == [[False, False, True]]  # 1.5 > 1.28: clipped statically
    torch.testing.assert_close(terms1.pg_losses[0, 2], torch.tensor(-1.28))


def test_effective_bound_metrics():
    gen = torch.Generator().manual_seed(1)
    passed, gids = binary_groups(4, 8, gen, successes=[0, 2, 4, 8])
    adv = grpo_advantages(passed, gids)
    batch = loss_batch(32, 6, gen, response_advantages=adv)
    config = actor_config(etr_alpha=1.0, etr_beta=0.5, etr_factor_min=0.5, etr_factor_max=2.0)
    with driver_macro_signal(elastic.group_variance_ratio(passed, gids)):
        _, m = compute_policy_loss_etr(batch["old_log_prob"], batch["log_prob"], batch["advantages"],
                                       batch["response_mask"], "token-mean", config)
    assert m["actor/etr/eps_low_min"] == pytest.approx(0.2 * m["actor/etr/factor_min"], rel=1e-6)
    assert m["actor/etr/eps_high_max"] == pytest.approx(0.28 * m["actor/etr/factor_max"], rel=1e-6)
    assert m["actor/etr/zero_variance_share"] == pytest.approx(0.5)  # groups with 0 and 8 successes
    assert m["actor/etr/share_at_factor_floor"] >= 0.5  # A = 0 there, so f = f_min
    assert m["actor/etr/pg_clipfrac_adv_pos"] + m["actor/etr/pg_clipfrac_adv_neg"] == pytest.approx(
        m["actor/pg_clipfrac"], abs=1e-7
    )
    assert m["actor/etr/macro_from_driver"] == 1.0
    assert 0 < m["actor/etr/macro_weight_mean"] < 1


def test_every_etr_metric_is_reduced_by_verl_as_its_name_says():
    """verl reduces a metric over mini-batches by its name (``reduce_metrics``: "max" in the key -> max, "min" ->
    min, else mean). Two mini-batches with different values: each ``actor/etr/*`` key must come out as intended —
    shares and means averaged, ``*_min`` / ``*_max`` the extreme."""
    import numpy as np
    from verl.utils.metric import reduce_metrics

    gen = torch.Generator().manual_seed(5)
    config = actor_config(etr_alpha=1.0, etr_beta=0.5, etr_macro_source="advantages", rollout_n=4)
    per_mini_batch = []
    for successes in ([0, 1, 2, 4], [2, 2, 3, 1]):
        scores, gids = binary_groups(4, 4, gen, successes=successes)
        batch = loss_batch(16, 6, gen, response_advantages=grpo_advantages(scores, gids))
        _, metrics = compute_policy_loss_etr(**batch, loss_agg_mode="token-mean", config=config)
        per_mini_batch.append({k: v for k, v in metrics.items() if k.startswith("actor/etr/")})
    keys = per_mini_batch[0].keys()
    reduced = reduce_metrics({k: [m[k] for m in per_mini_batch] for k in keys})
    differing = 0
    for key in keys:
        values = [m[key] for m in per_mini_batch]
        differing += values[0] != values[1]
        # what each metric means, not what its name says: only the bound/factor extremes are extremes
        intended = {f"actor/etr/{name}_{stat}": {"min": np.min, "max": np.max}[stat]
                    for name in ("factor", "eps_low", "eps_high") for stat in ("min", "max")}.get(key, np.mean)
        assert reduced[key] == pytest.approx(float(intended(values))), key
    assert differing >= 5, "the two mini-batches must differ for the check to mean anything"
