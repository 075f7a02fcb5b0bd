"""ETR on verl's real code paths: the worker's ppo_loss, the driver's compute_advantage (legacy and V1), the macro
channel in both batch layouts, Hydra + validation."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from etr_testkit import actor_config, binary_groups, grpo_advantages
from tensordict import TensorDict
from torch.overrides import TorchFunctionMode
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import ppo_loss

import etr_verl
import etr_verl.plugin  # noqa: F401  (registers, as the verl.plugins entry point does in every process)
from etr_verl import elastic
from etr_verl.adapters import macro_channel
from etr_verl.adapters.loss_function import EtrLossFunction
from etr_verl.config import EtrPolicyLossConfig


def _nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def worker_micro_batch(scores, gids, seed=0, macro=None, empty=(), layout="jagged"):
    """A micro-batch as verl's engine hands it to the loss: jagged (no-padding) tensors + global batch info.

    ``macro``: ``(bs,)`` variance ratios, carried in ``returns`` as ``etr_grpo`` writes them: jagged as the V1
    trainers put it into TransferQueue, or ``layout="dense"`` (``(bs, T)`` right-padded) as the legacy trainer
    sends it."""
    gen = torch.Generator().manual_seed(seed)
    bs = scores.numel()
    adv = grpo_advantages(scores, gids)
    p_len = torch.randint(1, 5, (bs,), generator=gen)
    r_len = torch.randint(2, 9, (bs,), generator=gen)
    old = [-torch.rand(int(r), generator=gen) * 2 for r in r_len]
    new_full = [torch.cat([torch.zeros(int(p)), o + 0.7 * torch.randn(int(r), generator=gen)])
                for p, r, o in zip(p_len, r_len, old)]
    # log-probs of sequence position t predict token t+1: verl left-shifts by one
    shifted = [torch.cat([x[1:], torch.zeros(1)]) for x in new_full]
    values = torch.cat(shifted).requires_grad_(True)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), (p_len + r_len).cumsum(0)])
    log_probs = torch.nested.nested_tensor_from_jagged(values, offsets)
    masks = [torch.ones(int(r), dtype=torch.bool) if i not in empty else torch.zeros(int(r), dtype=torch.bool)
             for i, r in enumerate(r_len)]
    fields = {
        "prompts": _nested([torch.ones(int(p), dtype=torch.long) for p in p_len]),
        "responses": _nested([torch.ones(int(r), dtype=torch.long) for r in r_len]),
        "response_mask": _nested(masks),
        "old_log_probs": _nested(old),
        "advantages": _nested([torch.full((int(r),), float(a)) for r, a in zip(r_len, adv)]),
    }
    if macro is not None:
        rows = [float(r) * m.float() for r, m in zip(macro.tolist(), masks)]
        if layout == "jagged":
            fields[macro_channel.FIELD] = _nested(rows)
        else:
            dense = torch.zeros(bs, int(r_len.max()))
            for i, row in enumerate(rows):
                dense[i, : row.numel()] = row
            fields[macro_channel.FIELD] = dense
    data = TensorDict(fields, batch_size=[bs])
    n_tokens = int(sum(int(m.sum()) for m in masks))
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=n_tokens, global_batch_size=bs)
    return {"log_probs": log_probs}, data, values


def _plain(values):
    """A verl Metric's recorded values as Python floats (tensors detached)."""
    return [float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values]


def _loss_and_grad(loss_fn, scores, gids, **kwargs):
    model_output, data, values = worker_micro_batch(scores, gids, **kwargs)
    loss, metrics = loss_fn(model_output=model_output, data=data)
    (grad,) = torch.autograd.grad(loss, values)
    plain = {k: (_plain(v.values) if hasattr(v, "values") else v) for k, v in metrics.items()}
    return loss.detach(), grad, plain


def test_worker_ppo_loss_etr_off_equals_vanilla():
    passed, gids = binary_groups(3, 4, torch.Generator().manual_seed(0))
    vanilla = actor_config("vanilla")
    etr = actor_config(etr_alpha=0.0, etr_beta=0.0)
    v_loss, v_grad, v_m = _loss_and_grad(lambda **kw: ppo_loss(vanilla, **kw), passed, gids, empty=(2,))
    e_loss, e_grad, e_m = _loss_and_grad(lambda **kw: ppo_loss(etr, **kw), passed, gids, empty=(2,))
    assert torch.equal(v_loss, e_loss) and torch.equal(v_grad, e_grad)
    for key in v_m:
        assert v_m[key] == e_m[key], key
    assert "actor/etr/factor_mean" in e_m


@pytest.mark.parametrize("layout", ["jagged", "dense"])
def test_worker_loss_function_carries_the_driver_signal(layout):
    """EtrLossFunction (what etr_verl's task runners install with set_loss_fn) hands the driver's per-group signal of
    the micro-batch, read from ``returns`` in either layout, to the etr loss through verl's unmodified ppo_loss."""
    passed, gids = binary_groups(3, 4, torch.Generator().manual_seed(1), successes=[1, 2, 3])
    # shaped rewards (a length penalty on top of pass/fail): the advantage fallback cannot recover these
    shaped = passed * 0.8 + 0.2 * torch.rand(12, generator=torch.Generator().manual_seed(9))
    macro = elastic.group_variance_ratio(shaped, gids)
    config = actor_config(rollout_n=4, etr_alpha=1.0, etr_beta=1.0, etr_factor_min=0.1, etr_factor_max=4.0,
                          etr_macro_source="driver")
    loss_fn = EtrLossFunction(config, channel=macro_channel.VARIANCE_RATIO)
    loss, grad, metrics = _loss_and_grad(loss_fn, shaped, gids, macro=macro, layout=layout)
    assert metrics["actor/etr/macro_from_driver"] == [1.0]
    assert torch.isfinite(loss) and grad.abs().sum() > 0
    # the same signal switched to a different value changes the loss: it is really used
    loss_other, _, _ = _loss_and_grad(loss_fn, shaped, gids, macro=torch.ones_like(macro), layout=layout)
    assert not torch.equal(loss, loss_other)
    # stock ppo_loss never sees returns; the fallback then refuses shaped rewards loudly
    fallback = actor_config(rollout_n=4, etr_alpha=1.0, etr_beta=1.0, etr_factor_min=0.1, etr_factor_max=4.0)
    with pytest.raises(elastic.ETRInputError, match="assumption failed"):
        _loss_and_grad(lambda **kw: ppo_loss(fallback, **kw), shaped, gids, macro=macro, layout=layout)


def test_worker_loss_function_refuses_returns_that_are_not_the_macro_signal():
    """A run whose estimator is not etr_grpo has GRPO's returns (= advantages, negative values) there."""
    passed, gids = binary_groups(2, 4, torch.Generator().manual_seed(1), successes=[1, 2])
    config = actor_config(rollout_n=4, etr_macro_source="driver")
    model_output, data, _ = worker_micro_batch(passed, gids, macro=torch.zeros(8))
    data[macro_channel.FIELD] = data["advantages"]
    with pytest.raises(elastic.ETRInputError, match="adv_estimator=etr_grpo"):
        EtrLossFunction(config, channel=macro_channel.VARIANCE_RATIO)(model_output=model_output, data=data)
    del data[macro_channel.FIELD]
    with pytest.raises(elastic.ETRInputError, match="no 'returns' field"):
        EtrLossFunction(config, channel=macro_channel.VARIANCE_RATIO)(model_output=model_output, data=data)


def test_fallback_through_stock_ppo_loss_matches_driver_for_binary_rewards():
    passed, gids = binary_groups(4, 6, torch.Generator().manual_seed(2), successes=[0, 1, 3, 5])
    config = actor_config(rollout_n=6, etr_alpha=1.0, etr_beta=0.5, etr_factor_min=0.25, etr_factor_max=3.0)
    macro = elastic.group_variance_ratio(passed, gids)
    driver_loss = EtrLossFunction(config, channel=macro_channel.VARIANCE_RATIO)
    d_loss, d_grad, d_m = _loss_and_grad(driver_loss, passed, gids, macro=macro)
    f_loss, f_grad, f_m = _loss_and_grad(lambda **kw: ppo_loss(config, **kw), passed, gids)
    assert d_m["actor/etr/macro_from_driver"] == [1.0] and f_m["actor/etr/macro_from_driver"] == [0.0]
    torch.testing.assert_close(f_loss, d_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(f_grad, d_grad, rtol=1e-5, atol=1e-7)


def _data_proto(scores, gids, length=5):
    bs = scores.numel()
    mask = torch.ones(bs, length)
    rewards = torch.zeros(bs, length)
    rewards[:, -1] = scores
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": np.array([f"prompt-{int(g)}" for g in gids], dtype=object)},
    )
    return data


@pytest.mark.parametrize("norm", [True, False])
def test_compute_advantage_with_etr_estimator_equals_grpo(norm):
    from omegaconf import OmegaConf

    passed, gids = binary_groups(5, 4, torch.Generator().manual_seed(3))
    algo = OmegaConf.create({"adv_estimator": "etr_grpo", "norm_adv_by_std_in_grpo": norm})
    etr = compute_advantage(_data_proto(passed, gids), adv_estimator="etr_grpo", config=algo)
    proto = _data_proto(passed, gids)
    vec, _ = core_algos.compute_grpo_vectorized_outcome_advantage(
        proto.batch["token_level_rewards"], proto.batch["response_mask"], proto.non_tensor_batch["uid"],
        norm_adv_by_std_in_grpo=norm,
    )
    loop = compute_advantage(_data_proto(passed, gids), adv_estimator="grpo", norm_adv_by_std_in_grpo=norm)
    assert torch.equal(etr.batch["advantages"], vec)
    torch.testing.assert_close(etr.batch["advantages"], loop.batch["advantages"], rtol=1e-5, atol=1e-6)


def test_verl_grpo_vectorized_ignores_the_config_flag_and_etr_grpo_does_not():
    """Canary for verl 0.9.1: compute_advantage passes norm_adv_by_std_in_grpo only to 'grpo', so registered
    estimators must read it from the algorithm config, as etr_grpo does (Dr.GRPO: no std normalisation)."""
    from omegaconf import OmegaConf

    passed, gids = binary_groups(5, 4, torch.Generator().manual_seed(3), successes=[1, 2, 3, 1, 2])
    algo = OmegaConf.create({"norm_adv_by_std_in_grpo": False})
    stock = compute_advantage(_data_proto(passed, gids), adv_estimator="grpo_vectorized", config=algo)
    etr = compute_advantage(_data_proto(passed, gids), adv_estimator="etr_grpo", config=algo)
    centred = passed - passed.view(5, 4).mean(1).repeat_interleave(4)
    torch.testing.assert_close(etr.batch["advantages"][:, 0], centred)
    assert not torch.allclose(stock.batch["advantages"][:, 0], centred)


def test_estimator_rejects_non_finite_rewards():
    passed, gids = binary_groups(2, 4, torch.Generator().manual_seed(3))
    passed[3] = float("nan")
    with pytest.raises(elastic.ETRInputError, match="NaN/inf"):
        compute_advantage(_data_proto(passed, gids), adv_estimator="etr_grpo", config={"norm_adv_by_std_in_grpo": True})


class _WorkCounter:
    """What a call does in Python, counted rather than timed: torch functions called (anywhere) and lines run in
    etr_verl's and verl's own code. A loop over responses or groups makes both grow with the batch."""

    OWN_CODE = tuple(str(Path(module.__file__).parent) for module in (etr_verl, verl))

    def __init__(self):
        self.torch_calls = 0
        self.lines = 0

    def __call__(self, fn, *args, **kwargs):
        counter = self

        class CountTorchCalls(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                counter.torch_calls += 1
                return func(*args, **(kwargs or {}))

        def count_lines(frame, event, arg):
            if event == "line":
                counter.lines += 1
            return count_lines

        def trace_own_code(frame, event, arg):
            return count_lines if frame.f_code.co_filename.startswith(self.OWN_CODE) else None

        sys.settrace(trace_own_code)
        try:
            with CountTorchCalls():
                return fn(*args, **kwargs)
        finally:
            sys.settrace(None)


def _estimator_work(groups, group_size=4):
    """(torch calls, lines run in etr_verl/verl) of one ``etr_grpo`` call on ``groups`` groups of uuid uids."""
    gen = torch.Generator().manual_seed(0)
    bs = groups * group_size
    scores = (torch.rand(bs, generator=gen) > 0.5).float()
    uids = [str(uuid.UUID(int=g)) for g in range(groups)]
    index = np.array([uids[i // group_size] for i in range(bs)], dtype=object)
    counter = _WorkCounter()
    counter(
        core_algos.get_adv_estimator_fn("etr_grpo"),
        token_level_rewards=scores[:, None].expand(-1, 8).contiguous() / 8, response_mask=torch.ones(bs, 8),
        index=index, config={"norm_adv_by_std_in_grpo": True},
    )
    return counter.torch_calls, counter.lines


def test_work_counter_sees_a_loop():
    """The counter behind the next test grows with a loop over groups (so equal counts there mean no loop)."""

    def per_group_means(scores, groups):
        return [scores[groups == g].mean() for g in range(int(groups.max()) + 1)]

    counts = []
    for n in (4, 64):
        counter = _WorkCounter()
        counter(per_group_means, torch.rand(4 * n), torch.arange(n).repeat_interleave(4))
        counts.append(counter.torch_calls)
    assert counts[1] > counts[0]


def test_estimator_is_vectorised():
    """No Python loop over responses or groups: one etr_grpo call on 8,192 responses in 2,048 groups calls exactly
    as many torch functions and runs exactly as many lines of etr_verl/verl as one on 64 responses in 16 groups.
    (Counted, not timed: its speed is benchmarks/overhead.py's.)"""
    assert _estimator_work(groups=2048) == _estimator_work(groups=16)


def _padded_proto(scores, gids, lengths):
    """A legacy-trainer batch: right-padded responses of the given lengths (0 = verl's padding sample)."""
    bs, width = scores.numel(), max(max(lengths), 1)
    mask = torch.zeros(bs, width)
    rewards = torch.zeros(bs, width)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        if n:
            rewards[i, n - 1] = scores[i]
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": np.array([f"prompt-{int(g)}" for g in gids], dtype=object)},
    )


def test_estimator_writes_the_whole_group_signal_to_returns():
    """etr_grpo's second output is v_g / v_max of each response's group (4 p (1 - p)), one value per response;
    verl's padding samples (empty mask) neither count in their group nor carry a value."""
    passed, gids = binary_groups(3, 4, torch.Generator().manual_seed(4), successes=[0, 2, 4])
    lengths = [3, 2, 4, 1] * 3
    lengths[11] = 0  # a padding sample
    passed[11] = 0.0
    data = compute_advantage(_padded_proto(passed, gids, lengths), adv_estimator="etr_grpo",
                             config={"norm_adv_by_std_in_grpo": True})
    returns = data.batch["returns"]
    ratio = macro_channel.decode(returns)
    # group 2 has 3 valid responses, all successes (the padding sample is not one of them)
    assert ratio.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 4
    assert returns.shape == (12, 1) and returns.dtype == torch.float32  # one value per response, not per token
    assert torch.equal(returns, ratio[:, None])
    # verl's critic/returns/* metrics select returns with the (bs, T) mask: the value at every valid token
    mask = data.batch["response_mask"].bool()
    assert torch.equal(torch.masked_select(returns, mask), ratio.repeat_interleave(torch.tensor(lengths)))


def test_macro_signal_is_identical_on_the_legacy_and_v1_paths_and_in_every_micro_batch():
    """The same batch through the legacy trainer's path (``compute_advantage`` on a padded DataProto; the worker
    gets dense ``returns``) and the V1 trainers' path (``compute_advantage_for_multi_trajectories``, then
    ``response_to_nested`` into TransferQueue; the worker gets jagged ``returns``): the loss reads the same fp32
    values, bit for bit, equal to ``group_variance_ratio`` of the whole groups, in every micro-batch split."""
    import importlib.util

    from verl.workers.utils.padding import response_to_nested

    gen = torch.Generator().manual_seed(7)
    n_groups, group = 6, 5
    scores = torch.randint(0, 2, (n_groups * group,), generator=gen).float()
    gids = torch.arange(n_groups).repeat_interleave(group)
    lengths = torch.randint(1, 9, (n_groups * group,), generator=gen).tolist()
    algo = {"norm_adv_by_std_in_grpo": True}
    legacy = compute_advantage(_padded_proto(scores, gids, lengths), adv_estimator="etr_grpo", config=algo)
    if importlib.util.find_spec("verl.trainer.ppo.v1") is not None:
        from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

        keys = [f"prompt-{int(g)}_0_{i}" for i, g in enumerate(gids)]
        v1 = compute_advantage_for_multi_trajectories(
            _padded_proto(scores, gids, lengths), batch_keys=keys, adv_estimator="etr_grpo",
            num_repeat=group, config=algo)
    else:  # verl 0.8.0 has no V1 trainer: the jagged layout is still what its engine may hand the loss
        v1 = legacy
    mask = legacy.batch["response_mask"]
    dense_batch = TensorDict({"returns": legacy.batch["returns"]}, batch_size=[len(lengths)])
    nested_mask = _nested([mask[i, :n] for i, n in enumerate(lengths)])  # as V1 keeps it in TransferQueue
    jagged_batch = TensorDict({"returns": response_to_nested(v1.batch["returns"], nested_mask)},
                              batch_size=[len(lengths)])
    expected = elastic.group_variance_ratio(scores, gids)
    for batch in (dense_batch, jagged_batch):
        assert torch.equal(macro_channel.read(batch), expected)
    # micro-batches split groups (selected as verl selects them); each reads exactly its rows' whole-group values
    order = torch.randperm(len(lengths), generator=gen)
    for rows in order.split(4):
        for batch in (dense_batch, jagged_batch):
            assert torch.equal(macro_channel.read(tu.index_select_tensor_dict(batch, rows)), expected[rows])


HYDRA_ETR = [
    f"actor_rollout_ref.actor.policy_loss._target_={'etr_verl.config.EtrPolicyLossConfig'}",
    "actor_rollout_ref.actor.policy_loss.loss_mode=etr",
    "+actor_rollout_ref.actor.policy_loss.etr_alpha=0.7",
    "+actor_rollout_ref.actor.policy_loss.etr_beta=1.0",
    "algorithm.adv_estimator=etr_grpo",
    "+algorithm.etr.reward_low=-1",
    "actor_rollout_ref.rollout.n=8",
    "data.train_batch_size=16",
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
    "trainer.n_gpus_per_node=1",
]


def _compose(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def test_hydra_composition_validation_and_dataclass():
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass

    from etr_verl.config import EtrAlgorithmConfig

    cfg = _compose(HYDRA_ETR)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor.policy_loss, EtrPolicyLossConfig)
    assert (actor.policy_loss.etr_alpha, actor.policy_loss.etr_beta, actor.rollout_n) == (0.7, 1.0, 8)
    assert EtrAlgorithmConfig.from_algorithm_config(cfg.algorithm).reward_low == -1.0


def test_hydra_misspelled_etr_key_fails_loudly():
    from verl.utils.config import omega_conf_to_dataclass

    cfg = _compose(HYDRA_ETR + ["+actor_rollout_ref.actor.policy_loss.etr_alfa=1.0"])
    with pytest.raises(Exception, match="etr_alfa"):
        omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def test_hydra_out_of_range_key_names_the_value():
    from verl.utils.config import omega_conf_to_dataclass

    cfg = _compose(HYDRA_ETR + ["actor_rollout_ref.actor.policy_loss.etr_beta=-2"])
    with pytest.raises(Exception, match=r"etr_beta=-2"):
        omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def test_out_of_range_scores_mid_run_are_clamped_for_the_macro_signal_with_a_warning(caplog):
    """An overlong penalty that first appears at step 900 (score -1.5 with reward_low=-1): the run goes on, the
    macro signal stays in [0, 1] and the warning names the count; on_out_of_range=raise stops instead."""
    scores = torch.tensor([1.0, -1.0, -1.5, 1.0])
    gids = torch.zeros(4, dtype=torch.long)
    algo = {"norm_adv_by_std_in_grpo": True, "etr": {"reward_low": -1.0, "reward_high": 1.0}}
    data = compute_advantage(_padded_proto(scores, gids, [3, 3, 3, 3]), adv_estimator="etr_grpo", config=algo)
    ratio = macro_channel.decode(data.batch["returns"])
    assert torch.equal(ratio, elastic.group_variance_ratio(scores.clamp(-1, 1), gids, reward_low=-1.0))
    assert "1 of 4 outcome scores lie outside" in caplog.text
    grpo = compute_advantage(_padded_proto(scores, gids, [3, 3, 3, 3]), adv_estimator="grpo_vectorized")
    assert torch.equal(data.batch["advantages"], grpo.batch["advantages"])  # advantages untouched
    strict = {**algo, "etr": {**algo["etr"], "on_out_of_range": "raise"}}
    with pytest.raises(elastic.ETRInputError, match="reward_low / reward_high"):
        compute_advantage(_padded_proto(scores, gids, [3, 3, 3, 3]), adv_estimator="etr_grpo", config=strict)


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two label vectors put the same responses together (labels themselves may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("labels", [
    [str(uuid.UUID(int=i % 7 * 977 + 13)) for i in range(40)],  # verl's uids: uuid4 strings, repeated per group
    ["prompt-3", "prompt-1", "prompt-3", "x", "prompt-1", "x"],
    ["7", "07", "7", "12", " 12", "3"],  # all parse as integers: verl groups them by value ("7" with "07")
    ["7", "07", "a", "a"],  # not all integers: grouped as strings
    [3, 1, 3, 2, 1],
    [1, "1", 2, "2", "b"],  # mixed types: verl compares them as str
    np.array(["b", "a", "b"]),  # a numpy unicode array
    torch.tensor([4, 2, 4, 9]),
], ids=["uuids", "names", "numeric-strings", "some-numeric", "ints", "mixed", "unicode-array", "tensor"])
def test_etr_groups_responses_exactly_as_verls_own_factorisation(labels):
    from verl.utils import as_torch_index

    from etr_verl.adapters.advantage import group_ids

    index = labels if isinstance(labels, (np.ndarray, torch.Tensor)) else np.array(labels, dtype=object)
    ours, verls = group_ids(index, device=torch.device("cpu")), as_torch_index(index, device="cpu")
    assert ours.dtype == torch.long and ours.shape == verls.shape
    assert _same_partition(ours, verls), (ours.tolist(), verls.tolist())
