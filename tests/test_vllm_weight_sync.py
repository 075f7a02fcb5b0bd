"""verl's weight sync from the FSDP actor to vLLM's rollout, on the local CPU backend, shown to be checked: the run of
tests/test_trainer_e2e.py rolls out every step with the actor's current weights (verl's
``training/rollout_probs_diff_max`` within float rounding; settings in etr_testkit). Here a run on the same settings,
its second and third updates dropped and its fourth broken (tests/weight_sync_faults, a fault injected into verl's
vLLM worker extension), fails that check at step 2, then ends in bounded time with the broken sync's cause printed.
No run leaves shared memory behind (verl's weight buckets are /dev/shm segments)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etr_testkit import (FP32_ACTOR_AND_ROLLOUT, SYNC_CHECKED_SIZES, SYNC_CHECKED_STEPS, SYNCED, trainer_task,
                         user_environment)

from etr_verl.demo.report import read_metrics
from etr_verl.demo.runner import trainer_overrides

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FAULTS = Path(__file__).resolve().parent / "weight_sync_faults"
BROKEN_SYNC_ENDS_WITHIN_S = 180  # from step 2's record: step 3, the sender's 20 s wait, Ray's teardown


def _when_step_is_logged(run: subprocess.Popen, metrics: Path, step: int, timeout: float) -> float:
    """The monotonic time at which ``metrics`` (verl's file logger, unbuffered) first holds ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(r["step"] >= step for r in read_metrics(metrics)):
                return time.monotonic()
        except (FileNotFoundError, ValueError):  # not created yet, or a line being written
            pass
        if run.poll() is not None:
            raise AssertionError(f"the run ended (exit {run.returncode}) before step {step} was logged")
        time.sleep(1)
    raise AssertionError(f"step {step} was not logged within {timeout} s")


def test_a_dropped_update_fails_the_check_and_a_broken_sync_ends_the_run_with_its_cause(tmp_path,
                                                                                       tmp_path_factory):
    """verl syncs once before step 1's rollout and once after each step's update, before that step's metrics are
    logged. Update 1 loads, updates 2 and 3 are dropped (steps 2 and 3 roll out stale weights), update 4 (after step
    3's update) raises: the run's metrics show step 1 in sync and step 2 not, then the run fails within the bound,
    its output naming vLLM's worker error and the sender's unacknowledged bucket."""
    task = trainer_task(tmp_path_factory)
    out = tmp_path / "run"
    overrides = trainer_overrides(task, "etr", SYNC_CHECKED_STEPS + 1, seed=0, out_dir=out, test_freq=-1,
                                  val_before_train=False, **SYNC_CHECKED_SIZES)
    with user_environment():
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"), "PYTHONUNBUFFERED": "1"}
    # the sender's wait for an acknowledgement, bounded at 120 s by default, shortened so that the broken sync ends
    # sooner
    env.update(ETR_TEST_WEIGHT_SYNC_FAULT="skip_after=1,raise_from=4", ETR_WEIGHT_SYNC_TIMEOUT_S="20",
               PYTHONPATH=f"{FAULTS}{os.pathsep}{env.get('PYTHONPATH', '')}")
    out.mkdir()
    shm_before = set(os.listdir("/dev/shm"))
    metrics = out / "metrics.jsonl"
    with open(out / "run.log", "w") as log:
        run = subprocess.Popen([sys.executable, "-m", "etr_verl.main", *overrides, *FP32_ACTOR_AND_ROLLOUT], env=env,
                               cwd=out, stdout=log, stderr=subprocess.STDOUT)
        try:
            broken_at = _when_step_is_logged(run, metrics, step=2, timeout=900)  # step 3's sync is the broken one
            returncode = run.wait(timeout=BROKEN_SYNC_ENDS_WITHIN_S + 60)
        finally:
            if run.poll() is None:  # a wait above failed: the driver stopped, then killed
                run.terminate()
                try:
                    run.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    run.kill()
                    run.wait()
    took = time.monotonic() - broken_at
    output = (out / "run.log").read_text()

    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2], output[-4000:]
    diffs = [r["training/rollout_probs_diff_max"] for r in rows]
    assert diffs[0] < SYNCED and diffs[1] > 100 * SYNCED, diffs
    assert returncode != 0 and took < BROKEN_SYNC_ENDS_WITHIN_S, took
    assert "this weight update was broken on purpose" in output  # vLLM's worker error, as the user sees it
    assert "did not acknowledge a bucket within 20 s" in output
    left = sorted(set(os.listdir("/dev/shm")) - shm_before)
    assert not left, f"the run left shared memory behind: {left}"
