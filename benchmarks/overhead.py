"""What ETR costs: its loss vs verl's `vanilla`, and `etr_grpo` vs verl's `grpo` / `grpo_vectorized`.

Prints, for every shape, the median forward+backward time of both losses, their ratio and their peak-memory
ratio, then the advantage estimators' times and ratios and the time of each of ``etr_grpo``'s steps that reads or
writes a ``(bs, T)`` tensor, all measured in the same run. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA; on the CPU it is the peak of live tensor storages created during the
call, tracked op by op (:class:`PeakTensorBytes`), which counts what the CUDA allocator would hold minus its
rounding and caching.

    python benchmarks/overhead.py --quick            # CI-sized smoke run (seconds)
    python benchmarks/overhead.py                    # micro-batches 8-32 x 4k-16k tokens, fp32 and bf16
    python benchmarks/overhead.py --device cuda      # the same on a GPU
    python benchmarks/overhead.py --device cuda --shapes 8x4096,32x32768   # other micro-batch shapes

``--shapes`` takes comma-separated ``BATCHxLENGTH`` pairs (responses x tokens) and replaces the loss benchmark's
shapes only (with ``--quick`` too); the advantage estimators' sizes stay as they are. The estimators run on the CPU
whatever ``--device`` says, as in verl, whose driver process computes the advantages.

verl imports Ray when it is imported; on a machine without Ray, put ``benchmarks/without_ray`` on ``PYTHONPATH``
(a stand-in that gives verl the one name it reads at import; the benchmark never uses Ray).

Targets (issue 29): loss time ratio <= 1.10 and peak-memory ratio <= 1.1 vs vanilla; etr_grpo >= 20x faster
than grpo and within 1.3x of grpo_vectorized.
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from verl.trainer.ppo.core_algos import (
    compute_grpo_outcome_advantage,
    compute_grpo_vectorized_outcome_advantage,
    compute_policy_loss_vanilla,
)
from verl.workers.config import ActorConfig, PolicyLossConfig

import etr_verl.plugin  # noqa: F401
from etr_verl.adapters.advantage import compute_etr_grpo_advantage, group_ids
from etr_verl.adapters.policy_loss import compute_policy_loss_etr, driver_macro_signal
from etr_verl.config import EtrPolicyLossConfig
from etr_verl.elastic import response_has_tokens

FULL_SHAPES = [(8, 4096), (16, 8192), (32, 4096), (32, 16384)]
QUICK_SHAPES = [(4, 512)]
ESTIMATOR_SHAPES = [(512, 16, 256), (256, 8, 8192)]  # prompts x responses x tokens: a batch, a long-response batch


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``--shapes``: ``"8x4096,32x16384"`` -> ``[(8, 4096), (32, 16384)]`` (an argparse ``type``)."""
    shapes = []
    for item in text.split(","):
        batch, sep, length = item.strip().lower().partition("x")
        if not (sep and batch.isdecimal() and length.isdecimal() and int(batch) > 0 and int(length) > 0):
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r} in {text!r} is not a shape: expected BATCHxLENGTH with positive integers, "
                "comma-separated, e.g. 8x4096,32x32768")
        shapes.append((int(batch), int(length)))
    return shapes


def _on_cuda(device: str) -> bool:
    """``cuda`` and ``cuda:N`` alike."""
    return torch.device(device).type == "cuda"


def _sync(device: str) -> None:
    if _on_cuda(device):
        torch.cuda.synchronize(device)


def _config(policy_loss) -> ActorConfig:
    return ActorConfig(strategy="fsdp", rollout_n=16, ppo_micro_batch_size_per_gpu=1, clip_ratio_low=0.2,
                       clip_ratio_high=0.28, policy_loss=policy_loss)


class PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the mode and alive at the same time.

    Every op's outputs are seen as they are made; a storage counts from its creation until it is freed (a
    finalizer on the storage). Views, and tensors that existed before (``existing``: the inputs), do not count,
    as with ``max_memory_allocated() - memory_allocated()`` on CUDA. Backward ops count too (autograd runs them
    under the caller's modes).
    """

    def __init__(self, existing: list[torch.Tensor]):
        super().__init__()
        self.live = self.peak = 0
        self._seen = {t.untyped_storage().data_ptr() for t in existing}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._count(leaf.untyped_storage())
        return out

    def _count(self, storage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._seen:
            return
        self._seen.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.discard(key)


def forward_backward(loss_fn, config, inputs, macro, log_prob):
    with driver_macro_signal(macro):
        loss, _ = loss_fn(old_log_prob=inputs["old_log_prob"], log_prob=log_prob, advantages=inputs["advantages"],
                          response_mask=inputs["response_mask"], loss_agg_mode="token-mean", config=config)
    loss.backward()


def time_once(loss_fn, config, inputs, macro, device):
    """Seconds of one forward+backward."""
    log_prob = inputs["log_prob"].clone().requires_grad_(True)
    _sync(device)
    start = time.perf_counter()
    forward_backward(loss_fn, config, inputs, macro, log_prob)
    _sync(device)
    return time.perf_counter() - start


def peak_bytes(loss_fn, config, inputs, macro, device):
    """Peak bytes one forward+backward allocates on top of its inputs (untimed call)."""
    log_prob = inputs["log_prob"].clone().requires_grad_(True)
    if _on_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        forward_backward(loss_fn, config, inputs, macro, log_prob)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    tracker = PeakTensorBytes([*inputs.values(), log_prob] + ([macro] if macro is not None else []))
    with tracker:
        forward_backward(loss_fn, config, inputs, macro, log_prob)
    return tracker.peak


def time_pair(candidates, inputs, device, reps):
    """Per-repetition times of each ``(loss_fn, config, macro)`` and its peak memory.

    The candidates are called in alternation (one call of each per repetition, after two warm-ups), so that a
    drift of the machine's speed hits them alike; the caller takes the median of the per-repetition ratios.
    """
    times = [[] for _ in candidates]
    for rep in range(reps + 2):
        for i, (loss_fn, config, macro) in enumerate(candidates):
            elapsed = time_once(loss_fn, config, inputs, macro, device)
            if rep >= 2:
                times[i].append(elapsed)
    peaks = [peak_bytes(loss_fn, config, inputs, macro, device) for loss_fn, config, macro in candidates]
    return times, peaks


def loss_inputs(bs, length, dtype, device, gen):
    lengths = torch.randint(length // 2, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    adv = torch.randn(bs, generator=gen).to(device)
    old = (-torch.rand(bs, length, generator=gen) * 3).to(device=device, dtype=dtype)
    new = (old.float() + 0.3 * torch.randn(bs, length, generator=gen).to(device)).to(dtype)
    return {"old_log_prob": old, "log_prob": new, "advantages": (adv[:, None] * mask).to(dtype), "response_mask": mask}


def bench_losses(shapes, dtypes, device, reps):
    gen = torch.Generator().manual_seed(0)
    vanilla_cfg = _config(PolicyLossConfig(loss_mode="vanilla"))
    etr_cfg = _config(EtrPolicyLossConfig())
    print(f"{'shape':>12} {'dtype':>9} {'vanilla ms':>11} {'etr ms':>9} {'time ratio':>11} {'mem ratio':>10}")
    worst = worst_memory = 0.0
    for bs, length in shapes:
        for dtype in dtypes:
            inputs = loss_inputs(bs, length, dtype, device, gen)
            macro = torch.rand(bs, generator=gen).to(device)
            (vanilla_times, etr_times), (mv, me) = time_pair(
                [(compute_policy_loss_vanilla, vanilla_cfg, None), (compute_policy_loss_etr, etr_cfg, macro)],
                inputs, device, reps)
            tv, te = statistics.median(vanilla_times), statistics.median(etr_times)
            ratio = statistics.median(e / v for v, e in zip(vanilla_times, etr_times))
            print(f"{bs:>4}x{length:<7} {str(dtype).split('.')[-1]:>9} {tv * 1e3:11.2f} {te * 1e3:9.2f} "
                  f"{ratio:11.2f} {me / mv:10.2f}")
            worst, worst_memory = max(worst, ratio), max(worst_memory, me / mv)
    return worst, worst_memory


def bench_estimators(n_prompts, group, length, reps):
    gen = torch.Generator().manual_seed(0)
    bs = n_prompts * group
    rewards = torch.zeros(bs, length)
    rewards[:, -1] = (torch.rand(bs, generator=gen) > 0.5).float()
    mask = torch.ones(bs, length)
    index = np.array([f"prompt-{i // group}" for i in range(bs)], dtype=object)
    config = {"norm_adv_by_std_in_grpo": True}
    fns = {
        "grpo": lambda: compute_grpo_outcome_advantage(rewards, mask, index),
        "grpo_vectorized": lambda: compute_grpo_vectorized_outcome_advantage(rewards, mask, index),
        "etr_grpo": lambda: compute_etr_grpo_advantage(rewards, mask, index, config=config),
    }
    times = median_times(fns, reps)
    print(f"\nadvantage estimators, {n_prompts} prompts x {group} responses x {length} tokens (CPU):")
    for name, t in times.items():
        print(f"  {name:>16}: {t * 1e3:9.2f} ms")
    print(f"  etr_grpo speed-up vs grpo: {times['grpo'] / times['etr_grpo']:.1f}x (target >= 20x)")
    print(f"  etr_grpo / grpo_vectorized: {times['etr_grpo'] / times['grpo_vectorized']:.2f} (target <= 1.3)")
    # where etr_grpo's time goes: its steps that read or write (bs, T) tensors, each timed alone (the rest of the
    # call is (bs,) work: the uids, the group statistics, the macro channel's (bs, 1) returns)
    scores = rewards.sum(dim=-1)
    groups = group_ids(index, device=scores.device)
    parts = median_times({
        "sum of the rewards": lambda: rewards.sum(dim=-1),
        "verl's estimator given the sums": lambda: compute_grpo_vectorized_outcome_advantage(
            scores.unsqueeze(-1), mask, groups),
        "non-empty rows": lambda: response_has_tokens(mask),
    }, reps)
    print("  etr_grpo's (bs, T) steps, each timed alone: " + ", ".join(
        f"{name} {t * 1e3:.2f} ms" for name, t in parts.items()))


def median_times(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds of each function, called in alternation (one call of each per repetition, after two
    warm-ups), so that the machine's drift and the allocator's state (fresh (bs, T) outputs page-fault or not)
    hit them alike."""
    samples = {name: [] for name in fns}
    for rep in range(reps + 2):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if rep >= 2:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized shapes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--shapes", type=parse_shapes, default=None, metavar="BATCHxLENGTH,...",
                        help="the loss benchmark's micro-batch shapes (default: "
                        f"{','.join(f'{b}x{t}' for b, t in FULL_SHAPES)}; with --quick: "
                        f"{','.join(f'{b}x{t}' for b, t in QUICK_SHAPES)})")
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 51)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    name = (torch.cuda.get_device_name(args.device) if _on_cuda(args.device)
            else f"CPU ({torch.get_num_threads()} threads)")
    print(f"device: {name}; torch {torch.__version__}; reps {reps} (times: medians; time ratio: median of the "
          "per-repetition ratios)\n")
    worst, worst_memory = bench_losses(shapes, [torch.float32, torch.bfloat16], args.device, reps)
    print(f"\nworst loss time ratio: {worst:.2f} (target <= 1.10)")
    print(f"worst loss peak-memory ratio: {worst_memory:.2f} (target <= 1.1)")
    for n_prompts, group, length in ([(64, 16, 32)] if args.quick else ESTIMATOR_SHAPES):
        bench_estimators(n_prompts, group, length, reps)


if __name__ == "__main__":
    main()
