"""Run verl's trainer (``python -m etr_verl.main``) for the demo, the tests and the benchmark: overrides, a
subprocess per run, progress lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def trainer_overrides(task: dict[str, str], algo: str, steps: int, seed: int, out_dir: Path,
                      prompts_per_step: int = 8, group_size: int = 8, updates_per_step: int = 4,
                      test_freq: int = 5, lr: float = 1e-4, val_before_train: bool = True,
                      save_freq: int = -1, max_response_length: int = 10, val_samples: int = 0,
                      ppo_epochs: int = 1, backend: str = "local_cpu", max_prompt_length: int = 32) -> list[str]:
    """The demo's verl config, as overrides of etr_verl's ``etr_trainer`` (every value visible here).

    ``updates_per_step`` mini-batches per step, each seen ``ppo_epochs`` times, keep the updates off-policy, so
    that clip bounds can bind.
    ``val_samples = 0``: greedy validation (one response per prompt); ``k > 0``: ``k`` responses per prompt at
    temperature 1, so that verl's validation reports ``mean@k`` and ``best@k`` (pass@k for 0/1 rewards).
    ``backend``: ``local_cpu`` (verl's vLLM rollout) or ``local_cpu_hf`` (the reproducible transformers replica)."""
    mini_batch_prompts = max(1, prompts_per_step // updates_per_step)
    if val_samples > 0:
        validation = ["actor_rollout_ref.rollout.val_kwargs.do_sample=true",
                      "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",
                      f"actor_rollout_ref.rollout.val_kwargs.n={val_samples}"]
    else:
        validation = ["actor_rollout_ref.rollout.val_kwargs.do_sample=false"]
    return [
        f"backend={backend}",
        f"algo={algo}",
        f"data.train_files={task['train']}",
        f"data.val_files={task['val']}",
        f"data.train_batch_size={prompts_per_step}",
        f"data.max_prompt_length={max_prompt_length}",
        f"data.max_response_length={max_response_length}",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={task['model']}",
        f"actor_rollout_ref.rollout.n={group_size}",
        "actor_rollout_ref.rollout.temperature=1.0",
        *validation,
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={prompts_per_step * group_size}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch_prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={mini_batch_prompts * group_size}",
        f"actor_rollout_ref.actor.ppo_epochs={ppo_epochs}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.entropy_coeff=0",
        "actor_rollout_ref.actor.loss_agg_mode=token-mean",
        f"actor_rollout_ref.actor.data_loader_seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        "trainer.logger=[console,file]",
        f"trainer.total_training_steps={steps}",
        f"trainer.val_before_train={str(val_before_train).lower()}",
        f"trainer.test_freq={test_freq}",
        f"trainer.save_freq={save_freq}",
        f"trainer.default_local_dir={out_dir / 'checkpoints' / algo}",
        "trainer.project_name=etr_demo",
        f"trainer.experiment_name={algo}",
    ]


def run_trainer(overrides: list[str], metrics_path: Path, log_path: Path, extra_env: dict | None = None,
                echo=print, on_start=None) -> None:
    """One real verl training run in a subprocess; echoes a line per step; raises with the log tail on failure."""
    # the caller's environment as it is: `python -m etr_verl.main backend=local_cpu` keeps Ray on loopback itself
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics_path), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    metrics_path.unlink(missing_ok=True)
    if not any(o.startswith("hydra.run.dir=") for o in overrides):  # Hydra's own files beside the run's, not in cwd
        overrides = [*overrides, f"hydra.run.dir={metrics_path.parent / (metrics_path.stem + '_hydra')}"]
    cmd = [sys.executable, "-m", "etr_verl.main", *overrides]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if on_start is not None:
            on_start(proc.pid)
        for line in proc.stdout:
            log.write(line)
            if "step:" in line and " - " in line:
                echo("    " + progress_line(line))
        code = proc.wait()
    if code != 0:
        tail = "".join(open(log_path).readlines()[-40:])
        raise RuntimeError(f"verl run failed (exit {code}); log: {log_path}\n{tail}")


def progress_line(line: str) -> str:
    """A compact summary of one of verl's console metric lines (values may print as ``np.float64(0.5)``)."""
    fields = {}
    for part in line.split(" - "):
        if ":" in part:
            key, value = part.split(":", 1)
            value = re.sub(r"^\s*np\.\w+\((.*)\)\s*$", r"\1", value)  # np.float64(0.5) -> 0.5
            number = re.match(r"\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$", value)
            if number:
                fields[key.strip()] = float(number.group(1))
    step = line.split("step:", 1)[1].split(" ", 1)[0]
    shown = [f"val acc {v:.3f}" for k, v in fields.items() if k.startswith("val-core/") and "/acc/" in k]
    for key, label in (("critic/score/mean", "reward"), ("actor/entropy", "entropy"),
                       ("actor/pg_clipfrac", "clipfrac"), ("actor/etr/factor_mean", "factor"),
                       ("timing_s/step", "s")):
        if key in fields:
            shown.append(f"{label} {fields[key]:.3f}")
    return f"step {step}: " + ", ".join(shown)
