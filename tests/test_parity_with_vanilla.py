"""The anchor: with elasticity off, ETR is verl's `vanilla` loss bit for bit (loss, gradient, metrics)."""

from __future__ import annotations

import pytest
import torch
from etr_testkit import AGG_MODES, actor_config, loss_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla, get_policy_loss_fn

from etr_verl.adapters.policy_loss import compute_policy_loss_etr, driver_budget_factors, driver_macro_signal
from etr_verl.elastic import budget_preserving_factor, response_advantage_magnitude, response_has_tokens

VANILLA_METRICS = ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")

# settings under which every elastic factor is exactly 1
ELASTICITY_OFF = {
    "alpha_beta_zero": dict(etr_alpha=0.0, etr_beta=0.0),
    "factor_pinned_to_one": dict(etr_alpha=1.0, etr_beta=0.5, etr_factor_min=1.0, etr_factor_max=1.0),
}


def _run(loss_fn, batch, config, use_weights):
    log_prob = batch["log_prob"].clone().requires_grad_(True)
    loss, metrics = loss_fn(
        old_log_prob=batch["old_log_prob"],
        log_prob=log_prob,
        advantages=batch["advantages"],
        response_mask=batch["response_mask"],
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=batch["rollout_is_weights"] if use_weights else None,
    )
    (grad,) = torch.autograd.grad(loss, log_prob)
    return loss.detach(), grad, metrics


def assert_same_as_vanilla(batch, agg, use_weights, etr_keys, global_info=None, clip=(0.2, 0.28), clip_c=3.0):
    vanilla_cfg = actor_config("vanilla", *clip, clip_ratio_c=clip_c, loss_agg_mode=agg)
    etr_cfg = actor_config("etr", *clip, clip_ratio_c=clip_c, loss_agg_mode=agg, **etr_keys)
    assert etr_cfg.policy_loss.coefficients.elasticity_off
    for cfg in (vanilla_cfg, etr_cfg):
        cfg.global_batch_info.update(global_info or {})
    v_loss, v_grad, v_metrics = _run(compute_policy_loss_vanilla, batch, vanilla_cfg, use_weights)
    ratio = torch.rand(batch["advantages"].shape[0])  # any driver signal: the factor is pinned anyway
    if etr_cfg.policy_loss.etr_budget == "preserve":  # the driver's factors, computed as etr_grpo does
        magnitude = response_advantage_magnitude(batch["advantages"], batch["response_mask"])
        informative = response_has_tokens(batch["response_mask"]) & (magnitude > 0)
        signal = driver_budget_factors(
            budget_preserving_factor(magnitude, ratio, informative, etr_cfg.policy_loss.coefficients))
    else:
        signal = driver_macro_signal(ratio)
    with signal:
        e_loss, e_grad, e_metrics = _run(compute_policy_loss_etr, batch, etr_cfg, use_weights)
    assert torch.equal(v_loss, e_loss), (v_loss.item(), e_loss.item())
    assert v_loss.dtype == e_loss.dtype
    assert torch.equal(v_grad, e_grad)
    for key in VANILLA_METRICS:
        assert e_metrics[key] == v_metrics[key], key
    assert e_metrics["actor/etr/factor_min"] == e_metrics["actor/etr/factor_max"] == 1.0 or not batch[
        "response_mask"
    ].any()
    return v_metrics


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("use_weights", [False, True])
@pytest.mark.parametrize("off", sorted(ELASTICITY_OFF))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elasticity_off_equals_vanilla_bitwise(agg, use_weights, off, dtype):
    gen = torch.Generator().manual_seed(7)
    batch = loss_batch(16, 24, gen, dtype=dtype, empty_rows=2, spread=0.8)
    metrics = assert_same_as_vanilla(batch, agg, use_weights, ELASTICITY_OFF[off])
    # the batch exercises what parity is about: both clip sides and the dual-clip bind
    assert metrics["actor/pg_clipfrac"] > 0.05
    assert metrics["actor/pg_clipfrac_lower"] > 0.0


@pytest.mark.parametrize("agg", AGG_MODES)
def test_parity_with_global_batch_info(agg):
    """verl's worker sets dp_size / global token count / global batch size; ETR must aggregate identically."""
    gen = torch.Generator().manual_seed(3)
    batch = loss_batch(12, 20, gen, empty_rows=1)
    info = {
        "dp_size": 4,
        "batch_num_tokens": int(batch["response_mask"].sum()) * 4 + 3,
        "global_batch_size": 12 * 4,
        "loss_scale_factor": 32,
    }
    assert_same_as_vanilla(batch, agg, True, ELASTICITY_OFF["alpha_beta_zero"], global_info=info)


def test_all_padding_micro_batch_matches_vanilla():
    """A micro-batch made only of verl's synthetic padding samples (empty masks) contributes exactly what vanilla's
    does (0) when the global batch info is set, as it is inside verl's trainer."""
    gen = torch.Generator().manual_seed(5)
    batch = loss_batch(4, 8, gen, empty_rows=4)
    info = {"dp_size": 1, "batch_num_tokens": 100, "global_batch_size": 10, "loss_scale_factor": None}
    for agg in AGG_MODES:
        assert_same_as_vanilla(batch, agg, True, ELASTICITY_OFF["alpha_beta_zero"], global_info=info)


@settings(max_examples=40, deadline=None)
@given(
    batch_size=st.integers(1, 12),
    length=st.integers(1, 16),
    seed=st.integers(0, 2**16),
    agg=st.sampled_from(AGG_MODES),
    use_weights=st.booleans(),
    off=st.sampled_from(sorted(ELASTICITY_OFF)),
    clip_low=st.floats(0.01, 0.4),
    clip_high=st.floats(0.01, 0.6),
    clip_c=st.floats(1.01, 10.0),
)
def test_parity_property(batch_size, length, seed, agg, use_weights, off, clip_low, clip_high, clip_c):
    gen = torch.Generator().manual_seed(seed)
    batch = loss_batch(batch_size, length, gen, spread=1.0)
    assert_same_as_vanilla(batch, agg, use_weights, ELASTICITY_OFF[off], clip=(clip_low, clip_high), clip_c=clip_c)


def test_default_coefficients_are_elastic():
    assert not actor_config("etr").policy_loss.coefficients.elasticity_off


def test_registered_under_etr():
    import etr_verl.plugin  # noqa: F401

    assert get_policy_loss_fn("etr") is compute_policy_loss_etr
