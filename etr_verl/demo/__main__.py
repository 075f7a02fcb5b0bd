"""The embedded demo (``make demo``): GRPO vs ETR with verl's real trainer, on this machine's CPU.

1. builds the miniature task locally (:mod:`etr_verl.demo.task`): data in verl's parquet schema graded by verl's
   gsm8k reward, a character-level tokenizer, a ~100k-parameter Qwen2 with a short supervised warm start;
2. runs ``python -m etr_verl.main backend=local_cpu algo=<algo>`` for each algorithm — verl's V1 trainer with
   Ray on loopback, an FSDP2 actor, the hf rollout, reward, advantages, the loss, weight sync and validation;
3. writes ``<out>/<algo>.jsonl`` (verl's file logger), ``<out>/*.png`` plots and ``<out>/summary.md``.

    python -m etr_verl.demo                       # defaults below, ~10 minutes on 2 cores
    python -m etr_verl.demo --steps 4 --algos etr  # a quicker look
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from etr_verl.demo.report import write_report
from etr_verl.demo.task import build_task

ALGOS = ("grpo", "dapo", "etr", "etr_micro", "etr_macro")


def trainer_overrides(task: dict[str, str], algo: str, steps: int, seed: int, out_dir: Path,
                      prompts_per_step: int = 8, group_size: int = 8, updates_per_step: int = 4,
                      test_freq: int = 5, lr: float = 1e-4, val_before_train: bool = True,
                      save_freq: int = -1) -> list[str]:
    """The demo's verl config, as overrides of etr_verl's ``etr_trainer`` (every value visible here).

    ``updates_per_step`` mini-batches per step keep the updates off-policy, so that clip bounds can bind."""
    mini_batch_prompts = max(1, prompts_per_step // updates_per_step)
    return [
        "backend=local_cpu",
        f"algo={algo}",
        f"data.train_files={task['train']}",
        f"data.val_files={task['val']}",
        f"data.train_batch_size={prompts_per_step}",
        "data.max_prompt_length=32",
        "data.max_response_length=10",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={task['model']}",
        f"actor_rollout_ref.rollout.n={group_size}",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=false",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={prompts_per_step * group_size}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch_prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={mini_batch_prompts * group_size}",
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
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics_path), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    metrics_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "etr_verl.main", *overrides]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if on_start is not None:
            on_start(proc.pid)
        for line in proc.stdout:
            log.write(line)
            if "step:" in line and " - " in line:
                echo("    " + _progress(line))
        code = proc.wait()
    if code != 0:
        tail = "".join(open(log_path).readlines()[-40:])
        raise RuntimeError(f"verl run failed (exit {code}); log: {log_path}\n{tail}")


def _progress(line: str) -> str:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--algos", default="grpo,etr", help=f"comma-separated, from {ALGOS}")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {ALGOS}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    print(f"[demo] building the task under {out / 'task'} (tokenizer, tiny model, warm start, parquet)")
    task = build_task(out / "task", seed=args.seed, log=lambda m: print("    " + m))
    for algo in algos:
        print(f"[demo] {algo}: verl trainer, {args.steps} steps (log: {out / (algo + '.log')})")
        run_trainer(trainer_overrides(task, algo, args.steps, args.seed, out), out / f"{algo}.jsonl",
                    out / f"{algo}.log")
    summary = write_report(out, algos)
    print(summary)
    print(f"[demo] done in {time.time() - start:.0f} s: {out}/summary.md and {out}/*.png")


if __name__ == "__main__":
    main()
