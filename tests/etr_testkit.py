"""Shared builders for etr-verl's tests (imported by name: tests/ is put on sys.path by conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from typing import Optional

import torch
from verl.workers.config import ActorConfig, PolicyLossConfig

from etr_verl.config import EtrPolicyLossConfig

ALL_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def _verl_accepts_agg_mode(mode: str) -> bool:
    try:
        ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, loss_agg_mode=mode)
    except ValueError:
        return False
    return True


AGG_MODES = tuple(m for m in ALL_AGG_MODES if _verl_accepts_agg_mode(m))
"""The aggregation modes the installed verl's ``ActorConfig`` accepts (verl 0.8.0 has no ``token-sum``)."""


def actor_config(
    loss_mode: str = "etr",
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.28,
    clip_ratio_c: float = 3.0,
    loss_agg_mode: str = "token-mean",
    rollout_n: int = 8,
    **etr_keys,
) -> ActorConfig:
    """A real verl ``ActorConfig`` with a vanilla or ETR policy-loss config."""
    if loss_mode == "etr":
        policy_loss = EtrPolicyLossConfig(loss_mode="etr", **etr_keys)
    else:
        assert not etr_keys
        policy_loss = PolicyLossConfig(loss_mode=loss_mode)
    return ActorConfig(
        strategy="fsdp",
        rollout_n=rollout_n,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio=0.2,
        clip_ratio_low=clip_ratio_low,
        clip_ratio_high=clip_ratio_high,
        clip_ratio_c=clip_ratio_c,
        loss_agg_mode=loss_agg_mode,
        policy_loss=policy_loss,
    )


def binary_groups(
    n_groups: int, group_size: int, generator: torch.Generator, successes: Optional[list[int]] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 outcome scores ``(n_groups * group_size,)`` with a given number of successes per group, and group ids."""
    if successes is None:
        successes = torch.randint(0, group_size + 1, (n_groups,), generator=generator).tolist()
    scores = []
    for k in successes:
        row = torch.zeros(group_size)
        row[torch.randperm(group_size, generator=generator)[:k]] = 1.0
        scores.append(row)
    group_ids = torch.arange(n_groups).repeat_interleave(group_size)
    return torch.cat(scores), group_ids


def grpo_advantages(scores: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Reference GRPO advantages (unbiased std), written independently of verl and etr_verl."""
    adv = torch.zeros_like(scores)
    for g in group_ids.unique():
        sel = group_ids == g
        s = scores[sel]
        if s.numel() == 1:
            adv[sel] = s
        else:
            adv[sel] = (s - s.mean()) / (s.std() + eps)
    return adv


def loss_batch(
    batch_size: int,
    length: int,
    generator: torch.Generator,
    response_advantages: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    empty_rows: int = 0,
    spread: float = 0.6,
) -> dict[str, torch.Tensor]:
    """A policy-loss batch: response masks of random lengths (``empty_rows`` rows fully masked, as verl's padding
    samples are), log-probs far enough apart that both clip sides and the dual-clip bind, outcome advantages."""
    lengths = torch.randint(1, length + 1, (batch_size,), generator=generator)
    if empty_rows:
        lengths[torch.randperm(batch_size, generator=generator)[:empty_rows]] = 0
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    if response_advantages is None:
        response_advantages = torch.randn(batch_size, generator=generator)
    advantages = (response_advantages.unsqueeze(1) * mask).to(dtype)
    old_log_prob = (-torch.rand(batch_size, length, generator=generator) * 3).to(dtype)
    log_prob = (old_log_prob.float() + spread * torch.randn(batch_size, length, generator=generator)).to(dtype)
    weights = (0.5 + torch.rand(batch_size, length, generator=generator)).to(dtype)
    return {
        "old_log_prob": old_log_prob,
        "log_prob": log_prob,
        "advantages": advantages,
        "response_mask": mask,
        "rollout_is_weights": weights,
    }


HANG_GUARD_S = 1800
"""The time limit of a test's subprocess where it only guards against a hang. Generous: make test-versions-suites runs
the non-slow tests at the lowest CPU priority beside make test's live part (CI: .ci/run), where a two-node run can
hold both CPUs for minutes and a subprocess that takes 10 s alone gets almost no CPU meanwhile."""


LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\]|localhost):")
"""A listening address on loopback, as `ss` prints it (IPv4, IPv6, IPv4-mapped IPv6)."""


def for_gpu_backend(overrides: list[str]) -> list[str]:
    """The demo's trainer overrides for the GPU backend (``backend=gpu``), composable on every supported verl:
    without ``actor_rollout_ref.rollout.seed``, which verl 0.8.0's rollout config lacks (the CPU backend's hf
    rollout is what needs it)."""
    return [o for o in overrides if not o.startswith(("backend=", "actor_rollout_ref.rollout.seed="))] + ["backend=gpu"]


def listening_addresses(root_pid: int) -> set[str]:
    """Addresses on which ``root_pid`` or any of its descendants listens (TCP), read from ``ss -ltnp``."""
    import psutil

    try:
        tree = {root_pid} | {p.pid for p in psutil.Process(root_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3] for line in out.splitlines() if {int(p) for p in re.findall(r"pid=(\d+)", line)} & tree}


class ListenerWatch:
    """Polls `ss -ltnp` for sockets owned by the run's process tree (driver, raylet, GCS, workers)."""

    def __init__(self):
        self.addresses: set[str] = set()
        self._stop = threading.Event()
        self._thread = None

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._poll, args=(pid,), daemon=True)
        self._thread.start()

    def _poll(self, pid: int) -> None:
        while not self._stop.is_set():
            self.addresses |= listening_addresses(pid)
            time.sleep(1.0)

    def stop(self) -> set[str]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        return self.addresses


def load_script(path, name: str):
    """Import a script that is not in a package (recipes/, benchmarks/) as module ``name``."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def user_environment():
    """``os.environ`` as a user's shell has it: without the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` that the
    Makefile exports for the whole suite (what the entry points must not rely on), restored afterwards."""
    saved = os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved


# what the Makefile exports for the suite, or a caller's shell may hold, that a user's run must not depend on
RUN_VARIABLES = ("RAY_ADDRESS", "WANDB_API_KEY", "DRY_RUN", "ETR_VERL_HYDRA_CONFIGS", "ETR_RECIPE_ALLOW_OTHER_VERL",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess run as a user runs it: this one without :data:`RUN_VARIABLES`, this venv's
    interpreter as ``PYTHON`` (the launchers' variable), then ``extra``."""
    import sys

    env = {k: v for k, v in os.environ.items() if k not in RUN_VARIABLES}
    env.update({"PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", **extra})
    return env


def local_overrides(task: dict, out) -> list[str]:
    """What a user changes to run one of the paper's experiments on this machine (``out``: a ``Path``): the
    backend, the tiny model and task (graded 0/1 by verl's gsm8k reward), where it saves and logs, and sizes for a
    ~100k-parameter model on 2 CPU cores."""
    return [
        "backend=local_cpu", f"actor_rollout_ref.model.path={task['model']}",
        f"data.train_files={task['train']}", f"data.val_files={task['val']}", "algorithm.etr.reward_low=0",
        f"paths.checkpoints={out / 'ckpts'}", "trainer.logger=[console,file]",
        "data.max_prompt_length=32", "data.max_response_length=10", "actor_rollout_ref.rollout.val_kwargs.n=2",
    ]


def local_backend() -> str:
    """The CPU backend for a real run in this venv: ``local_cpu`` (verl's vLLM rollout) where vLLM's CPU build is
    installed, which ``make install`` guarantees on the primary verl; ``local_cpu_hf`` (the transformers replica) in
    the other verl releases' venvs of ``make test-versions``, which have no vLLM."""
    from importlib import metadata

    from etr_verl.verl_support import PRIMARY_VERL_VERSION

    try:
        metadata.version("vllm")
        return "local_cpu"
    except metadata.PackageNotFoundError:
        if metadata.version("verl") == PRIMARY_VERL_VERSION:
            raise RuntimeError(f"verl {PRIMARY_VERL_VERSION}'s venv has no vLLM: run make install") from None
        return "local_cpu_hf"


# The weight-sync check (tests/test_trainer_e2e.py's first run; tests/test_vllm_weight_sync.py's faulted run, on the
# same settings, shows that the check fails without the sync). vLLM starts from dummy weights (verl's
# ``load_format: dummy``), so every rollout comes from weights verl's sync sent. With an fp32 actor and an fp32 rollout,
# the rollout's log-probs of its own samples equal the actor's recomputation to float rounding at every step
# (verl's ``training/rollout_probs_diff_max``), while a learning rate that moves the policy (``actor/ppo_kl`` 0.1-0.9)
# makes stale weights visible.
FP32_ACTOR_AND_ROLLOUT = [
    *(f"+actor_rollout_ref.actor.fsdp_config.mixed_precision.{key}=fp32"
      for key in ("param_dtype", "reduce_dtype", "buffer_dtype")),
    "actor_rollout_ref.rollout.dtype=float32"]
SYNC_CHECKED_STEPS = 3
SYNC_CHECKED_SIZES = dict(prompts_per_step=8, group_size=8, updates_per_step=4, lr=3e-3)
SYNCED = 1e-4  # the largest rollout-vs-actor log-prob difference of a synced step (fp32 both sides: observed <= 1e-6)


def trainer_task(tmp_path_factory) -> dict[str, str]:
    """The tiny task of the real-trainer tests (tests/test_trainer_e2e.py, tests/test_vllm_weight_sync.py), built
    once a session (a ~30 s warm start). The default warm start (600 steps): with 300, a step of 32 vLLM samples could
    all be wrong (no gradient)."""
    return _session_task(tmp_path_factory, "trainer-task", accuracy=0.6, n_train=128, n_val=16)


def recipe_task(tmp_path_factory) -> dict[str, str]:
    """The tiny task of the launcher tests that run an experiment (tests/test_recipe_real_step.py, the cluster tests),
    built once a session."""
    return _session_task(tmp_path_factory, "recipe-task", n_train=64, n_val=16)


def _session_task(tmp_path_factory, name: str, **spec) -> dict[str, str]:
    from etr_verl.demo.task import build_task

    # build_task reuses a folder whose task.json matches the spec; tests only read the task
    return build_task(tmp_path_factory.getbasetemp() / name, seed=0, log=lambda _m: None, **spec)


def compose_etr_trainer(overrides: list[str]):
    """etr_verl's primary config composed with ``overrides`` (Hydra's compose API, no command line)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=overrides)
