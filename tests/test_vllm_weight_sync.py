"""verl's weight sync from the FSDP actor to vLLM's rollout, on the local CPU backend, step by step.

vLLM starts from dummy weights (verl's ``load_format: dummy``): every rollout comes from weights that verl's sync
sent. With an fp32 actor and an fp32 rollout, the rollout's log-probs of its own samples equal the actor's
recomputation to float rounding (``training/rollout_probs_diff_max``, verl's metric) at every step, while a learning
rate that moves the policy (``actor/ppo_kl``) makes stale weights visible. The same run with the updates after the
first dropped (tests/weight_sync_faults, a fault injected into verl's vLLM worker extension) fails that check, so
the check can fail; a sync that raises ends the run in bounded time with its cause printed. No run leaves
shared memory behind (verl's weight buckets are /dev/shm segments)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etr_testkit import user_environment

from etr_verl.demo.report import read_metrics
from etr_verl.demo.runner import trainer_overrides
from etr_verl.demo.task import build_task

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FAULTS = Path(__file__).resolve().parent / "weight_sync_faults"
STEPS = 3
SYNCED = 1e-4  # fp32 on both sides: observed <= 1e-6
FP32 = [*(f"+actor_rollout_ref.actor.fsdp_config.mixed_precision.{key}=fp32"
          for key in ("param_dtype", "reduce_dtype", "buffer_dtype")), "actor_rollout_ref.rollout.dtype=float32"]
BROKEN_SYNC_ENDS_WITHIN_S = 300


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_task(tmp_path_factory.mktemp("task"), seed=0, n_train=64, n_val=16, log=lambda _m: None)


def _train(task, out: Path, fault: str = "", timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    # the demo's sizes (8 prompts x 8 samples, 4 updates a step); lr 3e-3 moves the policy (ppo_kl 0.1-0.9)
    overrides = trainer_overrides(task, "etr", STEPS, seed=0, out_dir=out, test_freq=-1, val_before_train=False,
                                  lr=3e-3)
    with user_environment():
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"), "PYTHONUNBUFFERED": "1"}
    if fault:  # the sender's wait, bounded at 120 s by default, shortened so that the broken sync ends sooner
        env.update(ETR_TEST_WEIGHT_SYNC_FAULT=fault, PYTHONPATH=f"{FAULTS}{os.pathsep}{env.get('PYTHONPATH', '')}",
                   ETR_WEIGHT_SYNC_TIMEOUT_S="20")
    shm_before = set(os.listdir("/dev/shm"))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "etr_verl.main", *overrides, *FP32], env=env, cwd=out,
                            capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - start
    (out / "run.log").write_text(result.stdout + result.stderr)
    left = sorted(set(os.listdir("/dev/shm")) - shm_before)
    assert not left, f"the run left shared memory behind: {left}"
    return result, took


def _steps(out: Path) -> list[dict]:
    return read_metrics(out / "metrics.jsonl")


def test_every_step_rolls_out_with_the_actor_s_current_weights(task, tmp_path):
    result, _ = _train(task, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rows = _steps(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert max(r["actor/ppo_kl"] for r in rows) > 0.1  # the policy moved: stale weights would show
    assert all(r["training/rollout_probs_diff_max"] < SYNCED for r in rows), \
        [r["training/rollout_probs_diff_max"] for r in rows]
    assert all(r["actor/etr/macro_from_driver"] == 1.0 for r in rows)


def test_dropped_updates_fail_the_check(task, tmp_path):
    """The updates after the first (the sync before step 1) are dropped: step 1 is in sync, later steps are not."""
    result, _ = _train(task, tmp_path, fault="skip_after=1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    diffs = [r["training/rollout_probs_diff_max"] for r in _steps(tmp_path)]
    assert diffs[0] < SYNCED and all(d > 100 * SYNCED for d in diffs[1:]), diffs


def test_a_broken_sync_ends_the_run_with_its_cause(task, tmp_path):
    result, took = _train(task, tmp_path, fault="raise", timeout=BROKEN_SYNC_ENDS_WITHIN_S + 120)
    assert result.returncode != 0 and took < BROKEN_SYNC_ENDS_WITHIN_S, took
    output = result.stdout + result.stderr
    assert "this weight update was broken on purpose" in output  # vLLM's worker error, as the user sees it
    assert "did not acknowledge a bucket within 20 s" in output
