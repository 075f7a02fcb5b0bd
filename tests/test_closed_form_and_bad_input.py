"""Closed-form cases worked by hand, and every bad input the spec names: a clear error, never a silent NaN."""

from __future__ import annotations

import math

import pytest
import torch
from etr_testkit import actor_config, binary_groups, grpo_advantages, loss_batch

from etr_verl import elastic
from etr_verl.adapters.policy_loss import compute_policy_loss_etr, driver_macro_signal
from etr_verl.config import EtrAlgorithmConfig, EtrPolicyLossConfig

G = 8


@pytest.mark.parametrize("k", range(G + 1))
def test_group_of_eight_with_k_successes(k):
    """G = 8, k successes, alpha = 1, beta = 1/2, eps = 0.2/0.28, factor clamp [0, 10] (inactive).

    By hand: p = k/8, v/v_max = 4p(1-p); GRPO (unbiased std) gives |A_succ| = sqrt(7/8 * (1-p)/p),
    |A_fail| = sqrt(7/8 * p/(1-p)); so f_succ = sqrt(7/8) * 2(1-p) and f_fail = sqrt(7/8) * 2p.
    """
    passed, gids = binary_groups(1, G, torch.Generator().manual_seed(k), successes=[k])
    ratio = elastic.group_variance_ratio(passed, gids)
    p = k / G
    assert ratio[0].item() == pytest.approx(4 * p * (1 - p), abs=1e-7)
    adv = grpo_advantages(passed, gids, eps=0.0 if 0 < k < G else 1e-6)
    coeffs = elastic.ElasticityCoefficients(alpha=1.0, beta=0.5, factor_min=0.0, factor_max=10.0)
    f = elastic.elastic_factor(adv.abs(), ratio, coeffs)
    expected = torch.where(passed > 0, torch.tensor(2 * (1 - p)), torch.tensor(2 * p)) * math.sqrt(7 / 8)
    if k in (0, G):
        expected = torch.zeros(G)  # zero variance: A = 0 and w = 0
    torch.testing.assert_close(f, expected, rtol=1e-5, atol=1e-6)
    # the group's total budget is proportional to its variance: sum_i f_i = 8 * sqrt(7/8) * 4p(1-p)
    assert f.sum().item() == pytest.approx(G * math.sqrt(7 / 8) * 4 * p * (1 - p), abs=1e-5)
    lower, upper = elastic.clip_bounds(f, 0.2, 0.28, torch.float32)
    torch.testing.assert_close(lower.squeeze(1), (1 - 0.2 * expected).float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(upper.squeeze(1), (1 + 0.28 * expected).float(), rtol=1e-6, atol=1e-6)


def test_default_clamp_on_the_same_groups():
    """Defaults (alpha 1, beta 1/2, factor in [0.5, 2]): k = 1 of 8 -> success f = 2 * sqrt(7/8) * 7/8 = 1.637,
    failures 2 * sqrt(7/8) / 8 = 0.234 -> clamped to 0.5."""
    coeffs = EtrPolicyLossConfig().coefficients
    passed, gids = binary_groups(1, G, torch.Generator().manual_seed(0), successes=[1])
    magnitude = grpo_advantages(passed, gids, eps=0.0).abs()
    f = elastic.elastic_factor(magnitude, elastic.group_variance_ratio(passed, gids), coeffs)
    assert f[passed > 0].item() == pytest.approx(2 * math.sqrt(7 / 8) * 7 / 8, rel=1e-5)
    assert bool((f[passed == 0] == 0.5).all())


def _etr_loss(batch, config, ratio=None):
    with driver_macro_signal(ratio):
        return compute_policy_loss_etr(
            batch["old_log_prob"], batch["log_prob"], batch["advantages"], batch["response_mask"],
            config.loss_agg_mode, config,
        )


@pytest.mark.parametrize("field", ["old_log_prob", "log_prob", "advantages"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_raise_when_asked_to(field, bad):
    batch = loss_batch(4, 5, torch.Generator().manual_seed(0))
    batch[field][1, 0] = bad
    with pytest.raises(elastic.ETRInputError, match=f"{field}: 1 token"):
        _etr_loss(batch, actor_config(etr_beta=0.0, etr_on_non_finite="raise"))


@pytest.mark.parametrize("field", ["old_log_prob", "log_prob", "advantages", "rollout_is_weights"])
def test_non_finite_inputs_skip_the_update_visibly_by_default(field, caplog):
    """As verl does for vanilla: the loss is NaN, so verl's optimizer step (which drops an update whose gradient
    norm is not finite) skips it; ETR adds the count as a metric and a warning. The run goes on."""
    from etr_verl.adapters import policy_loss

    policy_loss._reset_non_finite_streak()
    batch = loss_batch(4, 5, torch.Generator().manual_seed(0))
    batch[field][1, 0] = math.nan
    batch["log_prob"].requires_grad_(True)
    config = actor_config(etr_beta=0.0)
    loss, metrics = compute_policy_loss_etr(batch["old_log_prob"], batch["log_prob"], batch["advantages"],
                                            batch["response_mask"], config.loss_agg_mode, config,
                                            rollout_is_weights=batch["rollout_is_weights"])
    assert math.isnan(float(loss)) and metrics["actor/etr/non_finite_tokens"] == 1.0
    (grad,) = torch.autograd.grad(loss, batch["log_prob"])
    assert not bool(torch.isfinite(grad).all())  # verl's guard sees a non-finite gradient norm
    assert f"{field}: 1 token(s)" in caplog.text and "skips this optimizer step" in caplog.text
    clean, clean_metrics = _etr_loss(loss_batch(4, 5, torch.Generator().manual_seed(1)), config)
    assert math.isfinite(float(clean)) and clean_metrics["actor/etr/non_finite_tokens"] == 0.0


def test_too_many_consecutive_non_finite_micro_batches_are_fatal():
    from etr_verl.adapters import policy_loss

    policy_loss._reset_non_finite_streak()
    config = actor_config(etr_beta=0.0, etr_max_consecutive_non_finite=2)

    def bad_batch():
        batch = loss_batch(4, 5, torch.Generator().manual_seed(0))
        batch["advantages"][0, 0] = math.inf
        return batch

    _etr_loss(bad_batch(), config)
    _etr_loss(loss_batch(4, 5, torch.Generator().manual_seed(1)), config)  # a clean one resets the streak
    _etr_loss(bad_batch(), config)
    _etr_loss(bad_batch(), config)
    with pytest.raises(elastic.ETRInputError, match="3 consecutive micro-batches.*etr_max_consecutive_non_finite=2"):
        _etr_loss(bad_batch(), config)
    policy_loss._reset_non_finite_streak()


def test_verls_optimizer_step_drops_an_update_whose_gradient_norm_is_not_finite():
    """Canary for what etr_on_non_finite=skip_update relies on (as vanilla does): verl's FSDP engine skips the
    optimizer step when the gradient norm is NaN/inf."""
    import inspect

    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

    source = inspect.getsource(FSDPEngine.optimizer_step)
    assert "isfinite(grad_norm)" in source and "zero_grad" in source


@pytest.mark.parametrize("field,garbage", [("old_log_prob", math.nan), ("log_prob", -math.inf)])
def test_non_finite_outside_the_mask_is_ignored_like_vanilla(field, garbage):
    """Padding garbage trips the loss's fast (unmasked) finiteness screen; the exact masked check clears it."""
    batch = loss_batch(4, 5, torch.Generator().manual_seed(0))
    batch["response_mask"][0, -1] = False
    batch[field][0, -1] = garbage
    batch["advantages"][0, -1] = 0.0
    loss, _ = _etr_loss(batch, actor_config(etr_beta=0.0))
    assert torch.isfinite(loss)


def test_empty_mask_with_local_normalisation_raises_instead_of_nan():
    batch = loss_batch(3, 4, torch.Generator().manual_seed(0), empty_rows=3)
    with pytest.raises(elastic.ETRInputError, match="not finite"):
        _etr_loss(batch, actor_config(etr_beta=0.0))


def test_all_masked_rows_contribute_nothing():
    gen = torch.Generator().manual_seed(4)
    batch = loss_batch(6, 5, gen, empty_rows=2)
    config = actor_config(etr_alpha=1.0, etr_beta=0.0)
    loss, metrics = _etr_loss(batch, config)
    keep = batch["response_mask"].any(1)
    kept = {k: v[keep] for k, v in batch.items()}
    loss_kept, metrics_kept = _etr_loss(kept, actor_config(etr_alpha=1.0, etr_beta=0.0))
    torch.testing.assert_close(loss, loss_kept)
    assert metrics["actor/etr/factor_mean"] == pytest.approx(metrics_kept["actor/etr/factor_mean"])


def test_group_of_size_one_with_macro_on_raises():
    with pytest.raises(elastic.ETRInputError, match="single valid response"):
        elastic.group_variance_ratio(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 1]))
    # verl's padding samples (empty masks) do not count as group members
    ratio = elastic.group_variance_ratio(
        torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0, 0, 1]), valid=torch.tensor([True, True, False])
    )
    assert ratio.tolist() == [1.0, 1.0, 0.0]


def test_inconsistent_group_ids_raise():
    with pytest.raises(elastic.ETRInputError, match="disagree in length"):
        elastic.group_variance_ratio(torch.zeros(4), torch.zeros(3, dtype=torch.long))
    from etr_verl.adapters.advantage import check_group_ids

    with pytest.raises(elastic.ETRInputError, match="for 4 responses"):
        check_group_ids(["a", "a", "b"], 4)
    with pytest.raises(elastic.ETRInputError, match="no group id"):
        check_group_ids(["a", None, "b", "b"], 4)


def test_scores_outside_the_configured_range_raise_with_the_fix():
    with pytest.raises(elastic.ETRInputError, match="reward_low / reward_high"):
        elastic.group_variance_ratio(torch.tensor([-1.0, 1.0]), torch.tensor([0, 0]))


def test_fallback_refuses_non_binary_rewards():
    scores = torch.tensor([0.0, 0.3, 0.9, 1.0, 0.1, 0.5, 0.5, 0.2])  # shaped rewards
    gids = torch.zeros(8, dtype=torch.long)
    batch = loss_batch(8, 4, torch.Generator().manual_seed(0), response_advantages=grpo_advantages(scores, gids))
    with pytest.raises(elastic.ETRInputError, match="assumption failed"):
        _etr_loss(batch, actor_config(rollout_n=8))


def test_stock_main_ppo_with_one_response_per_prompt_fails_at_the_first_step_naming_the_key():
    """Issue 31 item 7: stock main_ppo builds the policy-loss config without rollout.n in view (verl's
    ActorConfig instantiates it as a child), so the worker's first loss call is the first place that can refuse."""
    batch = loss_batch(8, 4, torch.Generator().manual_seed(0), response_advantages=torch.ones(8))
    with pytest.raises(elastic.ETRInputError) as raised:
        _etr_loss(batch, actor_config(rollout_n=1))
    message = str(raised.value)
    assert message.startswith("actor_rollout_ref.rollout.n=1 with macro elasticity on")
    assert "Set actor_rollout_ref.rollout.n >= 2" in message and "policy_loss.etr_beta=0" in message


def test_driver_only_mode_refuses_to_guess():
    batch = loss_batch(8, 4, torch.Generator().manual_seed(0))
    with pytest.raises(elastic.ETRInputError, match="python -m etr_verl.main"):
        _etr_loss(batch, actor_config(etr_macro_source="driver"))


@pytest.mark.parametrize(
    "key, value",
    [
        ("etr_alpha", -0.1),
        ("etr_beta", math.nan),
        ("etr_adv_min", -1.0),
        ("etr_adv_max", math.nan),
        ("etr_factor_min", -0.5),
        ("etr_factor_max", 0.1),
        ("etr_macro_source", "rollout"),
    ],
)
def test_out_of_range_coefficients_name_the_key(key, value):
    with pytest.raises(elastic.ETRInputError, match=f"policy_loss.{key}="):
        EtrPolicyLossConfig(**{key: value})


def test_lower_bound_reaching_zero_is_rejected():
    batch = loss_batch(4, 4, torch.Generator().manual_seed(0))
    with pytest.raises(elastic.ETRInputError, match="factor_max"):
        _etr_loss(batch, actor_config(clip_ratio_low=0.6, etr_beta=0.0, etr_factor_max=2.0))


def test_algorithm_block_rejects_unknown_and_bad_keys():
    assert EtrAlgorithmConfig.from_algorithm_config({"etr": {"reward_low": -1, "reward_high": 1}}).reward_low == -1.0
    with pytest.raises(elastic.ETRInputError, match="reward_hgh"):
        EtrAlgorithmConfig.from_algorithm_config({"etr": {"reward_hgh": 1}})
    with pytest.raises(elastic.ETRInputError, match="must be >"):
        EtrAlgorithmConfig(reward_low=1.0, reward_high=1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_rollout_is_weights_at_a_valid_token_are_named(bad):
    batch = loss_batch(4, 5, torch.Generator().manual_seed(0))
    batch["rollout_is_weights"][2, 0] = bad
    config = actor_config(etr_beta=0.0, etr_on_non_finite="raise")
    with pytest.raises(elastic.ETRInputError, match="rollout_is_weights: 1 token"):
        compute_policy_loss_etr(batch["old_log_prob"], batch["log_prob"], batch["advantages"], batch["response_mask"],
                                config.loss_agg_mode, config, rollout_is_weights=batch["rollout_is_weights"])


@pytest.mark.parametrize(("low", "high", "message"), [
    (math.nan, 0.2, "clip_ratio_low=nan"), (0.2, math.inf, "clip_ratio_high=inf"), (None, 0.2, "clip_ratio_low=None"),
])
def test_non_finite_or_missing_clip_ratios_are_named(low, high, message):
    with pytest.raises(elastic.ETRInputError, match=message):
        elastic.validate_clip_range(low, high, 2.0)


def test_a_non_finite_macro_signal_is_named_as_such():
    from tensordict import TensorDict

    from etr_verl.adapters import macro_channel

    batch = TensorDict({"returns": torch.tensor([[0.5, 0.5], [math.nan, 0.0]])}, batch_size=[2])
    with pytest.raises(elastic.ETRInputError, match="macro signal, v_g / v_max\\) holds NaN/inf"):
        macro_channel.read(batch)


def test_a_nan_score_in_a_padding_row_does_not_reach_its_group():
    """verl's padding samples (empty mask) may carry anything; their group's variance must not turn NaN."""
    scores = torch.tensor([1.0, 0.0, 1.0, math.nan])
    groups = torch.tensor([0, 0, 0, 0])
    valid = torch.tensor([True, True, True, False])
    ratio = elastic.group_variance_ratio(scores, groups, valid)
    torch.testing.assert_close(ratio, torch.tensor([8 / 9, 8 / 9, 8 / 9, 0.0]))
