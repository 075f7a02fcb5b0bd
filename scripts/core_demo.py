"""ETR's core on verl's real code paths, on the CPU, in seconds: the interim `make demo`.

One batch of 6 prompts x 8 responses with binary outcomes (pass rates 0/8 .. 8/8 by construction): verl's
driver-side `compute_advantage` with `etr_grpo` (advantages, and the macro signal in `returns`), and verl's
worker-side `ppo_loss` with `loss_mode=vanilla` vs `loss_mode=etr` after a simulated off-policy update. Prints the
per-group elastic factors and effective clip ranges, and both losses' metrics. The full trainer demo (tiny model,
rollouts, Ray) is `make demo`.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig, PolicyLossConfig

import etr_verl.plugin  # noqa: F401
from etr_verl import elastic
from etr_verl.adapters import macro_channel
from etr_verl.adapters.loss_function import EtrLossFunction
from etr_verl.config import EtrPolicyLossConfig

GROUP, SUCCESSES, LENGTH, SEED = 8, [0, 1, 2, 4, 6, 8], 12, 0


def main() -> None:
    gen = torch.Generator().manual_seed(SEED)
    scores = torch.cat([(torch.arange(GROUP) < k).float() for k in SUCCESSES])
    uids = np.array([f"prompt-{i // GROUP}" for i in range(scores.numel())], dtype=object)
    bs = scores.numel()
    rewards = torch.zeros(bs, LENGTH)
    rewards[:, -1] = scores
    algo = OmegaConf.create({"adv_estimator": "etr_grpo", "norm_adv_by_std_in_grpo": True})
    batch = DataProto.from_dict({"token_level_rewards": rewards, "response_mask": torch.ones(bs, LENGTH)},
                                non_tensors={"uid": uids})
    batch = compute_advantage(batch, adv_estimator="etr_grpo", config=algo)
    advantages, returns = batch.batch["advantages"], batch.batch["returns"]
    macro = macro_channel.decode(returns)

    old = -torch.rand(bs, LENGTH, generator=gen) * 2
    new = old + 0.4 * torch.randn(bs, LENGTH, generator=gen)  # the policy after a few mini-batch updates
    results = {}
    for name, policy_loss in (("grpo (vanilla)", PolicyLossConfig(loss_mode="vanilla")),
                              ("etr", EtrPolicyLossConfig())):
        config = ActorConfig(strategy="fsdp", rollout_n=GROUP, ppo_micro_batch_size_per_gpu=bs, clip_ratio_low=0.2,
                             clip_ratio_high=0.28, policy_loss=policy_loss)
        data, model_output = _worker_batch(old, new, advantages, returns)
        loss_fn = EtrLossFunction(config, channel=macro_channel.VARIANCE_RATIO)
        loss, metrics = loss_fn(model_output=model_output, data=data)
        results[name] = (loss.item(), {k: float(np.mean([float(v) for v in m.values])) for k, m in metrics.items()})

    coeffs = EtrPolicyLossConfig().coefficients
    factor = elastic.elastic_factor(advantages[:, 0].abs(), macro, coeffs)
    print(f"ETR defaults: {coeffs}\n")
    print(f"{'group':>5} {'pass':>5} {'4p(1-p)':>8} {'f success':>10} {'f failure':>10} {'eps_high succ/fail':>19}")
    for g, k in enumerate(SUCCESSES):
        rows = slice(g * GROUP, (g + 1) * GROUP)
        f, s = factor[rows], scores[rows] > 0
        fs = f[s][0].item() if s.any() else float("nan")
        ff = f[~s][0].item() if (~s).any() else float("nan")
        print(f"{g:>5} {k}/{GROUP:<3} {macro[rows][0].item():>8.3f} {fs:>10.3f} {ff:>10.3f} "
              f"{0.28 * fs:>9.3f}/{0.28 * ff:<9.3f}")
    print(f"\ndriver (verl's critic/returns/mean): {float(returns.mean()):.4f}")
    for name, (loss, metrics) in results.items():
        shown = {k: round(v, 4) for k, v in metrics.items() if "clipfrac" in k or k.endswith("factor_mean")}
        print(f"{name:>15}: loss {loss:+.5f}  {shown}")


def _worker_batch(old, new, advantages, returns):
    """The micro-batch as verl's engine hands it to the loss: jagged tensors, prompt of 1 token per sample."""
    bs, length = old.shape
    nested = lambda rows: torch.nested.as_nested_tensor(list(rows), layout=torch.jagged)  # noqa: E731
    data = TensorDict({
        "prompts": nested(torch.ones(bs, 1, dtype=torch.long)),
        "responses": nested(torch.ones(bs, length, dtype=torch.long)),
        "response_mask": nested(torch.ones(bs, length, dtype=torch.bool)),
        "old_log_probs": nested(old),
        "advantages": nested(advantages),
        macro_channel.FIELD: nested(returns),
    }, batch_size=[bs])
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=bs * length, global_batch_size=bs)
    shifted = torch.cat([new, torch.zeros(bs, 1)], dim=1)  # position t predicts token t+1
    return data, {"log_probs": nested(shifted)}


if __name__ == "__main__":
    main()
