"""verl's real trainers with ETR on the local CPU backend: the V1 sync trainer, the V1 colocated async trainer and the
legacy RayPPOTrainer run, ETR acts exactly in their workers, every step rolls out with the actor's current weights,
the hf replica repeats its first step, and Ray stays on loopback; the reading presets whose path differs train a real
step (each on one of the other trainers: one run proves both). Resuming from a checkpoint is tested where users meet
it, a job resubmitted to a cluster (tests/test_two_hosts_submit.py; tests/test_cluster_submit.py where namespaces
cannot be made).
Rollouts are verl's vLLM rollout (the transformers replica where the test says why). (Slowest tests of the suite.)

``separate_async`` is not run here: verl refuses it with the ``naive`` checkpoint engine (it needs nccl/nixl/
mooncake weight transfer to a separate rollout pool), the only one a CPU offers.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from etr_testkit import (FP32_ACTOR_AND_ROLLOUT, LOOPBACK, SYNC_CHECKED_SIZES, SYNC_CHECKED_STEPS, SYNCED,
                         ListenerWatch, local_backend, trainer_task, user_environment)

from etr_verl.demo.report import read_metrics
from etr_verl.demo.runner import run_trainer, trainer_overrides

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ETR_KEYS = ("actor/etr/factor_mean", "actor/etr/eps_low_min", "actor/etr/eps_low_max", "actor/etr/macro_from_driver",
            "actor/etr/zero_variance_share", "actor/etr/pg_clipfrac_adv_pos",
            "critic/returns/mean")  # verl's metric of the batch field that carries the macro signal


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return trainer_task(tmp_path_factory)


def _overrides(task, out: Path, name: str, steps: int, algo: str = "etr", extra=(), **kwargs) -> list[str]:
    # lr 3e-4: at 1e-3 one step left every response of step 2 wrong (no informative group, so no gradient); a
    # one-step run needs one informative group, the first run (3e-3) one informative step
    settings = dict(backend=local_backend(), prompts_per_step=8, group_size=4, updates_per_step=2, lr=3e-4)
    overrides = trainer_overrides(task, algo, steps, seed=0, out_dir=out, test_freq=-1, val_before_train=False,
                                  **{**settings, **kwargs})
    overrides += list(extra)
    return [o.replace(f"experiment_name={algo}", f"experiment_name={name}") for o in overrides]


def _run(task, out: Path, name: str, steps: int, algo: str = "etr", watch=None, extra=(), **kwargs) -> list[dict]:
    overrides = _overrides(task, out, name, steps, algo, extra, **kwargs)
    with user_environment():  # not the Makefile's: the entry point alone must keep Ray on loopback
        run_trainer(overrides, out / f"{name}.jsonl", out / f"{name}.log", echo=lambda _l: None,
                    on_start=watch.start if watch else None)
    return read_metrics(out / f"{name}.jsonl")


@pytest.fixture(scope="module")
def first_run(task, tmp_path_factory):
    """The sync trainer (verl 0.9.1's default), with the weight-sync check's settings (etr_testkit)."""
    out = tmp_path_factory.mktemp("run")
    watch = ListenerWatch()
    shm_before, sockets_before = set(os.listdir("/dev/shm")), _temp_dir_sockets()
    try:
        rows = _run(task, out, "first", steps=SYNC_CHECKED_STEPS, watch=watch, extra=FP32_ACTOR_AND_ROLLOUT,
                    **SYNC_CHECKED_SIZES)
    finally:
        addresses = watch.stop()
    # verl's weight buckets and vLLM's message queues are /dev/shm segments; vLLM's ZeroMQ sockets, temp dir files
    left = sorted(set(os.listdir("/dev/shm")) - shm_before) + sorted(_temp_dir_sockets() - sockets_before)
    return out, rows, addresses, left


def _temp_dir_sockets() -> set[str]:
    temp = Path(tempfile.gettempdir())
    return {str(path) for path in temp.iterdir() if path.is_socket() or path.name.startswith("etr-vllm-ipc-")}


def _assert_exact_etr(rows):
    for row in rows:
        for key in ETR_KEYS:
            assert key in row and math.isfinite(row[key]), key
        assert row["actor/etr/macro_from_driver"] == 1.0  # the exact driver signal reached the loss
        # effective bounds are elastic: they differ from the static clip_ratio (0.2)
        assert row["actor/etr/eps_low_min"] < 0.2 - 1e-6 or row["actor/etr/eps_low_max"] > 0.2 + 1e-6
        assert 0.0 <= row["critic/returns/min"] <= row["critic/returns/max"] <= 1.0  # v_g / v_max, not returns


def test_etr_runs_in_the_workers(first_run):
    _, rows, _, _ = first_run
    assert [r["step"] for r in rows] == list(range(1, SYNC_CHECKED_STEPS + 1))
    _assert_exact_etr(rows)
    # parameters changed: later mini-batches of a step are off-policy (ratio != 1), so the KL is non-zero
    assert any(abs(r["actor/ppo_kl"]) > 0 for r in rows)
    # a step with an informative group (rewards that differ) has a gradient; a step with none has none at all
    informative = [r for r in rows if r["actor/etr/zero_variance_share"] < 1.0]
    assert informative, "no step had an informative group: the gradient check would be vacuous"
    assert all(r["actor/grad_norm"] > 0 for r in informative)
    assert all(r["actor/grad_norm"] == 0.0 for r in rows if r not in informative)


def test_every_step_rolls_out_with_the_actor_s_current_weights(first_run):
    """tests/test_vllm_weight_sync.py drops the updates after the first on the same settings: the check fails."""
    _, rows, _, left = first_run
    assert max(r["actor/ppo_kl"] for r in rows) > 0.1  # the policy moved: stale weights would show
    assert all(r["training/rollout_probs_diff_max"] < SYNCED for r in rows), \
        [r["training/rollout_probs_diff_max"] for r in rows]
    assert not left, f"the run left shared memory or socket files behind: {left}"


def test_ray_listened_on_loopback_only(first_run):
    _, _, addresses, _ = first_run
    assert addresses, "saw no listening socket of the run: the check would be vacuous"
    assert all(LOOPBACK.match(a) for a in addresses), addresses


def test_the_hf_replica_repeats_the_first_step(task, tmp_path):
    """backend=local_cpu_hf, the rollout the learning benchmark's paired seeds rely on: same seed, same config, the
    first step's rollouts, rewards and driver-side macro signal are identical. (verl's vLLM rollout, the default, is
    seeded but not reproducible on a CPU: README, "The local CPU backend".)

    Not reproducible bit for bit after that: verl's V1 trainer orders the training batch as rollouts complete
    (concurrent requests), so the rows that land in each PPO mini-batch, and hence the updates, can differ between
    runs. Everything that does not depend on row order is compared here.

    The two runs are one Hydra sweep of two otherwise identical jobs (``-m +repeat=1,2``), as a user runs "GRPO vs
    ETR" (``-m algo=grpo,etr``): one process, each job its own run name (so its own metrics file and checkpoint
    directory) and a Ray of its own (etr_verl/sweep.py)."""
    overrides = [o for o in _overrides(task, tmp_path, "unused", steps=1, backend="local_cpu_hf")
                 if not o.startswith(("trainer.experiment_name=", "trainer.default_local_dir="))]
    with user_environment():
        env = {key: value for key, value in os.environ.items() if key != "VERL_FILE_LOGGER_PATH"}
        sweep = subprocess.run(
            [sys.executable, "-m", "etr_verl.main", "-m", "+repeat=1,2", *overrides],
            env={**env, "VERL_FILE_LOGGER_ROOT": str(tmp_path)}, cwd=tmp_path, capture_output=True, text=True,
            timeout=900)
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-4000:]
    # verl's default run name, then each job's swept value
    first, again = (read_metrics(tmp_path / "etr_demo" / f"gsm8k-repeat={n}.jsonl") for n in (1, 2))
    assert [r["step"] for r in first] == [r["step"] for r in again] == [1]
    keys = ("critic/score/mean", "critic/score/max", "response_length/mean", "critic/advantages/max",
            "critic/advantages/min", "critic/returns/mean", "critic/returns/max")
    for key in keys:
        assert first[0][key] == pytest.approx(again[0][key], rel=1e-6, abs=1e-9), key


def _is_primary_verl() -> bool:
    import verl

    from etr_verl.verl_support import PRIMARY_VERL_VERSION

    return verl.__version__ == PRIMARY_VERL_VERSION


def _legacy_trainer_runs_without_flash_attn() -> bool:
    """verl 0.9.0's legacy trainer unpads batches in the driver with flash-attn's ``unpad_input`` (0.9.1 added a
    pure-torch fallback); flash-attn needs CUDA, so that trainer cannot run on a CPU-only machine there."""
    import torch
    from verl.utils.attention_utils import unpad_input

    try:
        unpad_input(torch.zeros(1, 2, 1), torch.ones(1, 2, dtype=torch.long))
    except ModuleNotFoundError:
        return False
    return True


# the readings of docs/algorithm.md, section 2b, are algo= presets that reach the workers through the same policy-loss
# config; a real step for each of the two whose path differs: etr_upper (the other bound is the elastic one) and
# etr_budget (the driver's factors travel in verl's returns), each on one of the other trainers. etr_linear, etr_tanh,
# etr_floor and etr_additive differ from these only in the factor's formula, which test_readings.py checks through
# verl's worker-side loss (exact at zero, monotone, bounded, micro-batch invariant) and test_main_config.py composes
# and validates as presets.
@pytest.mark.parametrize("trainer,algo", [
    pytest.param(["trainer.use_v1=false"], "etr_budget", id="legacy-etr_budget", marks=pytest.mark.skipif(
        not _legacy_trainer_runs_without_flash_attn(),
        reason="this verl's legacy trainer needs flash-attn (CUDA) in the driver; verl 0.9.1 does not")),
    pytest.param(["trainer.v1.trainer_mode=colocate_async"], "etr_upper", id="colocate_async-etr_upper"),
    pytest.param(["trainer.v1.trainer_mode=sync"], "etr", id="sync-etr", marks=pytest.mark.skipif(
        _is_primary_verl(), reason="on the primary verl, test_etr_runs_in_the_workers runs the sync trainer")),
])
def test_etr_is_exact_on_the_other_trainers(task, tmp_path, trainer, algo):
    """One override switches verl's trainer; ETR's loss function is installed and the macro signal is exact there,
    for the reading preset the run uses."""
    watch = ListenerWatch()
    try:
        rows = _run(task, tmp_path, "other", steps=1, algo=algo, watch=watch, extra=trainer)
    finally:
        addresses = watch.stop()
    assert [r["step"] for r in rows] == [1]
    (row,) = rows
    if algo == "etr":
        _assert_exact_etr(rows)
    else:
        _assert_reading_acts(row, algo)
    assert row["actor/grad_norm"] > 0
    assert addresses and all(LOOPBACK.match(a) for a in addresses), addresses


def _assert_reading_acts(row: dict, algo: str) -> None:
    # etr_budget's loss gets the driver's factors, not the variance ratios it would summarise
    keys = [k for k in ETR_KEYS if not (algo == "etr_budget" and k == "actor/etr/zero_variance_share")]
    for key in keys:
        assert key in row and math.isfinite(row[key]), key
    if algo == "etr_budget":  # the whole batch's factors travelled in verl's returns (negated, in [-2, -0.5])
        assert -2.0 <= row["critic/returns/mean"] <= -0.5
    assert row["actor/etr/macro_from_driver"] == 1.0
    moving = "eps_high" if algo == "etr_upper" else "eps_low"  # the bound the reading scales is elastic
    assert row[f"actor/etr/{moving}_min"] < 0.2 - 1e-6 or row[f"actor/etr/{moving}_max"] > 0.2 + 1e-6
    if algo == "etr_upper":  # and the other one stays GRPO's
        assert row["actor/etr/eps_low_min"] == row["actor/etr/eps_low_max"] == pytest.approx(0.2)


def test_a_successful_run_ends_without_a_teardown_traceback(first_run):
    out, _, _, _ = first_run
    log = (out / "first.log").read_text()
    assert "is killed by signal" not in log and "Traceback" not in log.split("Final validation metrics")[-1]


