"""An experiment of the paper, run for real through its launcher: `recipes/train.sh qwen2_5_math_7b_dapo17k
algo=etr` trains one step on the local CPU backend, with the model replaced by the tiny local one and sizes shrunk by
Hydra overrides only; the saved checkpoint then goes through `recipes/eval/evaluate_checkpoint.sh` with the same
experiment (verl's model merger + its validation protocol, validation only). ~3 minutes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from etr_testkit import LOOPBACK, ListenerWatch, local_overrides, recipe_task, user_env

from etr_verl.demo.report import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "recipes" / "train.sh"
EVALUATE = ROOT / "recipes" / "eval" / "evaluate_checkpoint.sh"
EXPERIMENT = "qwen2_5_math_7b_dapo17k"


TRAIN_SHRINK = ["data.train_batch_size=8", "actor_rollout_ref.rollout.n=4",
                "actor_rollout_ref.actor.ppo_mini_batch_size=4", "trainer.total_training_steps=1",
                "trainer.save_freq=1"]


def run_script(cmd: list[str], env: dict, log: Path, watch: ListenerWatch | None = None) -> str:
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if watch:
            watch.start(proc.pid)
        code = proc.wait(timeout=900)
    output = log.read_text()
    assert code == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe")
    task = recipe_task(tmp_path_factory)
    metrics = out / "train.jsonl"
    watch = ListenerWatch()
    try:
        run_script(["bash", str(TRAIN), EXPERIMENT, "algo=etr", *local_overrides(task, out), *TRAIN_SHRINK],
                   user_env(VERL_FILE_LOGGER_PATH=str(metrics)), out / "train.log", watch)
    finally:
        addresses = watch.stop()
    return task, out, read_metrics(metrics), addresses


def test_etr_experiment_trains_one_real_step(trained):
    _, out, rows, _ = trained
    step = {r["step"]: r for r in rows}
    assert set(step) == {0, 1}  # validation before training, then one step (with its final validation)
    assert step[1]["actor/etr/macro_from_driver"] == 1.0
    assert step[1]["actor/grad_norm"] > 0
    assert "val-core/openai/gsm8k/acc/mean@2" in step[0]
    run_dir = out / "ckpts" / "etr-reproduction" / "qwen2.5-math-7b-dapo17k-etr"  # the experiment's naming
    assert (run_dir / "global_step_1" / "actor").is_dir()


def test_recipe_run_listened_on_loopback_only(trained):
    addresses = trained[3]
    assert addresses and all(LOOPBACK.match(a) for a in addresses), addresses


def test_saved_checkpoint_evaluates_through_the_eval_entry(trained):
    task, out, _, _ = trained
    checkpoint = out / "ckpts" / "etr-reproduction" / "qwen2.5-math-7b-dapo17k-etr" / "global_step_1"
    eval_dir = out / "eval"
    output = run_script(["bash", str(EVALUATE), EXPERIMENT, *local_overrides(task, out)],
                        user_env(CKPT=str(checkpoint), EVAL_DIR=str(eval_dir)), out / "eval.log")
    assert (checkpoint / "actor" / "huggingface_merged" / "config.json").is_file()
    rows = read_metrics(eval_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0] and "val-core/openai/gsm8k/acc/mean@2" in rows[0]
    assert "openai/gsm8k" in output.split("validation at step 0", 1)[1]
