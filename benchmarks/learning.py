"""Learning benchmark: GRPO, DAPO clip-higher, ETR, its ablations and readings on a miniature task, several seeds.

Every run is verl 0.9.1's real V1 trainer on the local CPU backend (``python -m etr_verl.main backend=local_cpu``,
through :mod:`etr_verl.demo.runner`), with the same task, the same number of steps and the same rollouts per step
(prompts x group size) for every arm. Arms differ only in the algorithm preset (and, for coefficient arms, in
``policy_loss.etr_*`` overrides). Per run, verl's own JSONL metrics are kept; this script then aggregates them
over seeds (mean and spread, and each arm's per-seed difference from GRPO) into markdown tables and PNG plots.

Tasks (``--task``): ``carry`` (default; :mod:`carry_task`: 1-3 digit sums worked column by column, mixed
difficulty; checkpoints saved every ``test_freq`` steps are measured by the evaluation set, greedy on 1024
problems and mean@k / pass@k at temperature 1 on 512 (with ``--eval-large-k N``, also pass@1..N from N samples
per problem on their 3-column sums), and by greedy accuracy on verl's 64 validation prompts;
verl's own validation at temperature 1, k samples per prompt, runs before training and at the last step) and
``digits`` (the demo's single-digit sums; the dated appendix of
docs/benchmarks.md).

    python benchmarks/learning.py                      # the documented full run (docs/benchmarks.md)
    python benchmarks/learning.py --quick              # CI smoke: one ETR run of 2 steps, same pipeline
    python benchmarks/learning.py --arms grpo,etr,etr_linear,etr_upper --seeds 0,1,2   # any algo= preset is an arm
    python benchmarks/learning.py --arm etr_a2=etr:etr_alpha=2.0 --arms etr_a2   # an extra coefficient arm
    python benchmarks/learning.py --report-only        # re-aggregate the runs already on disk

Runs that finished (their JSONL reaches the last step) are reused, so an interrupted sweep resumes. The carry sweep
runs in parts (docs/benchmarks.md section 1) from the committed warm start, into a committed record folder:

    python benchmarks/learning.py --task-dir docs/learning_carry/task_h15 --out docs/learning_carry/sweep \
        --arms grpo,etr
    python benchmarks/learning.py --task-dir docs/learning_carry/task_h15 --out docs/learning_carry/sweep \
        --arms grpo_matched,dapo      # the static control takes ETR's mean range from the finished etr runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from etr_verl.demo import task as digits_task
from etr_verl.demo.report import VAL_PREFIX, read_metrics, series
from etr_verl.demo.runner import run_trainer, trainer_overrides

if str(Path(__file__).resolve().parent) not in sys.path:  # carry_task.py lives beside this script, however loaded
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import carry_task  # noqa: E402

TASKS = {"carry": carry_task.build_task, "digits": digits_task.build_task}

ACTOR = "actor_rollout_ref.actor"
ACTOR_KEYS = ("clip_ratio_low", "clip_ratio_high")  # for controls, e.g. GRPO with ETR's mean clip range
PRESETS = ("grpo", "dapo", "etr", "etr_micro", "etr_macro")  # the default arms
# every algo= preset is an arm by its name, the readings of docs/algorithm.md (2b) included: --arms etr,etr_linear
ALL_PRESETS = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "etr_verl" / "hydra_configs" / "algo")
                           .glob("*.yaml")))


@dataclass(frozen=True)
class Arm:
    """One benchmarked configuration: an algorithm preset plus optional ``policy_loss.etr_*`` / clip overrides."""

    name: str
    preset: str
    loss_overrides: dict[str, str] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        return [f"{ACTOR}.{key}={value}" if key in ACTOR_KEYS else f"{ACTOR}.policy_loss.{key}={value}"
                for key, value in self.loss_overrides.items()]


def parse_arm(text: str) -> Arm:
    """``NAME=PRESET[:key=value,...]`` -> :class:`Arm`, e.g. ``etr_a2=etr:etr_alpha=2.0,etr_beta=1.0`` or
    ``grpo_narrow=grpo:clip_ratio_low=0.15,clip_ratio_high=0.15``."""
    if "=" not in text:
        raise ValueError(f"--arm {text!r}: expected NAME=PRESET[:key=value,...], e.g. etr_a2=etr:etr_alpha=2.0")
    name, spec = text.split("=", 1)
    preset, _, rest = spec.partition(":")
    if preset not in ALL_PRESETS:
        raise ValueError(f"--arm {text!r}: unknown preset {preset!r}; choose from {ALL_PRESETS}")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not (key.startswith("etr_") or key in ACTOR_KEYS):
            raise ValueError(f"--arm {text!r}: {item!r} is not a key=value override of policy_loss.etr_* or "
                             f"{ACTOR_KEYS}")
        overrides[key] = value
    return Arm(name, preset, overrides)


# The actor's compute in fp32 (verl's FSDP engine defaults to bf16): a CPU without AVX-512 BF16 (AVX2 only) runs bf16
# matmuls through a scalar fallback, measured 38x slower than fp32 and a 3x slower actor update (docs/benchmarks.md
# section 1). fp32 also lets the small updates of a 77k-parameter model reach the forward pass unrounded.
FP32_ACTOR = [f"+actor_rollout_ref.actor.fsdp_config.mixed_precision.{key}=fp32"
              for key in ("param_dtype", "reduce_dtype", "buffer_dtype")]


# GRPO and DAPO run through ETR's loss with both levels off, which is verl's `vanilla` loss bit for bit (the anchor
# test, tests/test_parity_with_vanilla.py): the same numbers, plus ETR's clip fractions by advantage sign for them
BASELINES_THROUGH_ETR = {
    "grpo": Arm("grpo", "etr", {"etr_alpha": "0", "etr_beta": "0"}),
    "dapo": Arm("dapo", "etr", {"etr_alpha": "0", "etr_beta": "0", "clip_ratio_high": "0.28"}),
}


def defined_arms(definitions: list[str]) -> dict[str, Arm]:
    """Every arm a command may name: each algorithm preset as itself, GRPO and DAPO through ETR's loss
    (:data:`BASELINES_THROUGH_ETR`), and the ``--arm NAME=PRESET[:key=value,...]`` definitions (``ValueError``
    naming a bad one)."""
    defined = {name: Arm(name, name) for name in ALL_PRESETS}
    defined.update(BASELINES_THROUGH_ETR)
    defined.update({arm.name: arm for arm in map(parse_arm, definitions)})
    return defined


# The static control: GRPO (ETR's loss with both levels off) with one clip range for every response, equal to ETR's
# mean effective range over the responses that carry a gradient, measured on the finished `etr` runs of the same --out.
MATCHED_CONTROL = "grpo_matched"
MATCHED_SOURCE = "etr"


def informative_factor_mean(rows: list[dict], factor_min: float) -> float:
    """Mean elastic factor over the informative responses (``A_i != 0``) of one run, steps 2..N.

    verl's ``actor/etr/factor_mean`` averages over every valid response, zero-variance groups included; their
    ``A_i = 0`` gives ``f_i = factor_min`` (the default reading: ``m_i = w_g = 0``) and no gradient. Per step, with
    ``z`` = ``actor/etr/zero_variance_share``: ``f_informative = (factor_mean - z * factor_min) / (1 - z)``. Steps
    without an informative response are skipped.
    """
    per_step = [(float(r["actor/etr/factor_mean"]) - float(r["actor/etr/zero_variance_share"]) * factor_min)
                / (1.0 - float(r["actor/etr/zero_variance_share"]))
                for r in rows if r["step"] >= 2 and "actor/etr/factor_mean" in r
                and float(r.get("actor/etr/zero_variance_share", 1.0)) < 1.0]
    if not per_step:
        raise ValueError("no step with ETR's factor and zero-variance metrics (actor/etr/factor_mean, "
                         "actor/etr/zero_variance_share): is this an `etr` run?")
    return statistics.fmean(per_step)


def matched_range(out: Path, seeds: list[int], steps: int,
                  run_metrics: Callable[[int], Path] | None = None) -> dict:
    """The control's static clip offsets, frozen in ``OUT/matched_range.json`` the first time they are measured
    (so that every seed of the control, run in any later part of the sweep, gets the same range).

    ``eps_* = clip_ratio_* x`` the mean informative factor of the finished ``etr`` runs of ``seeds`` (mean over
    steps 2..N, then over seeds). ``run_metrics(seed)``: the metrics file of the ``etr`` run of a seed (default:
    this script's ``OUT/runs/etr/seedN.jsonl``). Raises ``ValueError`` naming the fix when those runs are not
    finished yet.
    """
    frozen = out / "matched_range.json"
    if frozen.exists():
        return json.loads(frozen.read_text())
    from omegaconf import OmegaConf

    preset = OmegaConf.load(Path(__file__).resolve().parents[1] / "etr_verl" / "hydra_configs" / "algo"
                            / f"{MATCHED_SOURCE}.yaml").actor_rollout_ref.actor
    run_metrics = run_metrics or (lambda seed: out / "runs" / MATCHED_SOURCE / f"seed{seed}.jsonl")
    paths = {seed: run_metrics(seed) for seed in seeds}
    runs = {seed: read_metrics(path) for seed, path in paths.items() if path.exists()}
    missing = [seed for seed in seeds if not any(r["step"] == steps for r in runs.get(seed, []))]
    if missing:
        raise ValueError(f"{MATCHED_CONTROL} takes its range from the finished {MATCHED_SOURCE} runs of the same "
                         f"--out, and seeds {missing} are not finished in {out}: run --arms {MATCHED_SOURCE} "
                         f"--seeds {','.join(map(str, seeds))} first")
    per_seed = [informative_factor_mean(rows, preset.policy_loss.etr_factor_min) for rows in runs.values()]
    factor = statistics.fmean(per_seed)
    all_responses = statistics.fmean(float(r["actor/etr/factor_mean"]) for rows in runs.values()
                                     for r in rows if r["step"] >= 2 and "actor/etr/factor_mean" in r)
    matched = {"eps_low": round(preset.clip_ratio_low * factor, 4),
               "eps_high": round(preset.clip_ratio_high * factor, 4),
               "informative_factor_mean": factor, "informative_factor_per_seed": per_seed,
               "all_responses_factor_mean": all_responses, "from": f"{MATCHED_SOURCE} seeds {seeds}"}
    frozen.write_text(json.dumps(matched, indent=1))
    return matched


def matched_control(matched: dict) -> Arm:
    return Arm(MATCHED_CONTROL, "etr", {"etr_alpha": "0", "etr_beta": "0", "clip_ratio_low": str(matched["eps_low"]),
                                        "clip_ratio_high": str(matched["eps_high"])})


@dataclass
class Settings:
    task: str = "carry"
    steps: int = 30
    prompts_per_step: int = 8
    group_size: int = 8
    # chosen by the GRPO pilots of docs/benchmarks.md section 1 (2026-11-30, fp32 actor, the 15 % start): GRPO
    # improves on every measure of the evaluation set, entropy falls, clipping binds (0.8 %); at lr 1e-4 the same
    # set-up lost accuracy on every measure, even on one-column sums
    updates_per_step: int = 4
    epochs: int = 4  # PPO epochs over each step's rollouts
    lr: float = 3e-5
    test_freq: int = 5
    val_samples: int = 8  # k of mean@k / pass@k; 0: greedy validation in verl (the digits task)
    max_response_length: int = carry_task.MAX_RESPONSE_TOKENS
    # the carry task's warm start (carry_task.build_task; calibrate with `python benchmarks/carry_task.py`)
    warm_steps: int = 600
    noise: float = 0.0
    hard_share: float | None = 0.15
    # the actor's compute dtype: "fp32" (FP32_ACTOR) or "bf16" (verl's default; the runs before 2026-11-30)
    actor_compute: str = "fp32"
    # the carry task's evaluation set on every checkpoint (carry_task.eval_set_accuracy): greedy on this many
    # problems, mean@k / pass@k on the first eval_sampled of them (0: none, the runs before 2026-11-30 13:00)
    eval_problems: int = 1024
    eval_sampled: int = 512
    # breadth where it can narrow: this many samples per problem on the 3-column sums of the eval_sampled problems,
    # and the unbiased pass@j from them for j = 1, 2, 4, ..., eval_large_k (carry_task.large_k_accuracy; 0: none)
    eval_large_k: int = 0
    # verl's own validation (val_samples per prompt on its 64 prompts) at every checkpoint, or (False) before
    # training and at the last step only: the evaluation set, 16x larger and 30x cheaper, covers the checkpoints
    verl_val_each_checkpoint: bool = False

    def save(self, out: Path) -> None:
        (out / "settings.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, out: Path) -> "Settings":
        saved = json.loads((out / "settings.json").read_text())
        saved.setdefault("epochs", 1)  # runs saved before the option existed had one epoch
        saved.setdefault("actor_compute", "bf16")  # and verl's default bf16 FSDP compute
        saved.setdefault("eval_problems", 0)  # and no evaluation set: verl's validation at every checkpoint
        saved.setdefault("eval_sampled", 0)
        saved.setdefault("eval_large_k", 0)  # and no large-k measure (the runs before 2026-12-01)
        saved.setdefault("verl_val_each_checkpoint", True)
        return cls(**saved)

    def describe(self) -> str:
        validation = (f"temperature 1, {self.val_samples} samples per prompt; greedy on the checkpoints"
                      if self.val_samples else "greedy")
        if self.eval_problems:
            validation += (f"; evaluation set on the checkpoints: greedy on {self.eval_problems} problems, "
                           f"mean@{self.val_samples} and pass@{self.val_samples} on {self.eval_sampled}")
            if self.eval_large_k:
                validation += (f", pass@1..{self.eval_large_k} from {self.eval_large_k} samples on their 3-column "
                               "sums")
        task = self.task if self.task != "carry" else (
            f"carry (warm start {self.warm_steps} steps, noise {self.noise:g}, 3-column share "
            f"{'the task mix' if self.hard_share is None else f'{self.hard_share:g}'})")
        return (f"task {task}, {self.steps} steps x {self.prompts_per_step} prompts x {self.group_size} "
                f"responses, {self.updates_per_step} PPO mini-batches per step x {self.epochs} epoch(s), "
                f"lr {self.lr:g}, actor compute {self.actor_compute}, responses up to {self.max_response_length} "
                f"tokens, checkpoints every {self.test_freq} steps, verl's validation "
                f"{'at each' if self.verl_val_each_checkpoint else 'before training and at the last step'} "
                f"({validation})")

    @property
    def greedy_on_checkpoints(self) -> bool:
        return self.val_samples > 0


def run_arm(task: dict, arm: Arm, seed: int, settings: Settings, out: Path) -> Path:
    """One training run; returns its JSONL (reused if a previous run already reached the last step)."""
    run_dir = out / "runs" / arm.name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / f"seed{seed}.jsonl"
    if metrics.exists() and any(r["step"] == settings.steps for r in read_metrics(metrics)):
        print(f"[learning] {arm.name} seed {seed}: reusing {metrics}")
        return metrics
    checkpoints = run_dir / f"seed{seed}_checkpoints"
    verl_val_freq = settings.test_freq if settings.verl_val_each_checkpoint else settings.steps
    overrides = trainer_overrides(
        task, arm.preset, settings.steps, seed, run_dir, prompts_per_step=settings.prompts_per_step,
        group_size=settings.group_size, updates_per_step=settings.updates_per_step, test_freq=verl_val_freq,
        ppo_epochs=settings.epochs, lr=settings.lr, max_response_length=settings.max_response_length,
        val_samples=settings.val_samples,
        save_freq=settings.test_freq if settings.greedy_on_checkpoints else -1,
        # the transformers replica: rollouts bit-reproducible from the seed, which the paired seeds (an arm and its
        # baseline drawing the same first responses) and the committed reports' reruns rely on; vLLM on a CPU is
        # seeded but not reproducible between runs (README, "The local CPU backend")
        backend="local_cpu_hf",
    )
    overrides = [o for o in overrides if not o.startswith(("trainer.experiment_name=", "trainer.default_local_dir="))]
    overrides += [f"trainer.experiment_name={arm.name}_seed{seed}", f"trainer.default_local_dir={checkpoints}",
                  "trainer.resume_mode=disable", *arm.overrides(),
                  # the committed reports ran the actor on one thread (the local backend now gives it every CPU):
                  # a rerun on this machine repeats them bit for bit
                  '++ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS="1"']
    if settings.actor_compute == "fp32":
        overrides += FP32_ACTOR
    if settings.greedy_on_checkpoints:  # the Hugging Face weights only: what the greedy evaluation loads
        overrides.append("actor_rollout_ref.actor.checkpoint.save_contents=[hf_model]")
    start = time.time()
    print(f"[learning] {arm.name} seed {seed}: {settings.steps} steps")
    run_trainer(overrides, metrics, run_dir / f"seed{seed}.log", echo=lambda line: None)
    if settings.greedy_on_checkpoints:
        greedy, eval_set = evaluate_checkpoints(checkpoints, task, settings)
        (run_dir / f"seed{seed}.greedy.json").write_text(json.dumps(greedy, indent=1))
        if eval_set:
            (run_dir / f"seed{seed}.eval.json").write_text(json.dumps(eval_set, indent=1))
    print(f"[learning] {arm.name} seed {seed}: done in {time.time() - start:.0f} s")
    return metrics


def evaluate_checkpoints(checkpoints: Path, task: dict, settings: Settings) -> tuple[dict, dict]:
    """Every saved step's model, measured twice: greedy accuracy on verl's validation prompts, and (when
    ``settings.eval_problems``) the evaluation set of :func:`carry_task.eval_set_accuracy`; then the
    checkpoints are removed (only the numbers are kept). Step 0 is the warm start: its validation accuracy was
    measured when the task was built, its evaluation set is taken here. Returns ``({step: accuracies}, ...)``."""
    import shutil

    def measure(model_dir) -> dict[str, float]:
        return carry_task.eval_set_accuracy(model_dir, settings.eval_problems, settings.eval_sampled,
                                           samples=settings.val_samples, large_k=settings.eval_large_k)

    greedy = {"0": json.loads((Path(task["model"]).parent / "task.json").read_text())["greedy_accuracy"]}
    evaluated = {"0": measure(task["model"])} if settings.eval_problems else {}
    for step_dir in sorted(checkpoints.glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])):
        model_dir, step = step_dir / "actor" / "huggingface", step_dir.name.rsplit("_", 1)[1]
        greedy[step] = carry_task.greedy_accuracy(model_dir, task["val"])
        if settings.eval_problems:
            evaluated[step] = measure(model_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return greedy, evaluated


# ---- aggregation ----------------------------------------------------------------------------------------------

def accuracy_keys(rows: list[dict]) -> dict[str, str]:
    """verl's validation accuracy keys of a run: ``mean@k`` (``k`` = responses per prompt; greedy with ``k = 1``)
    and, for ``k > 1``, ``pass@k`` (verl's ``best@k/mean``: the chance that one of ``k`` samples passes)."""
    found = {}
    for key in sorted({k for r in rows for k in r if k.startswith(VAL_PREFIX) and "/acc/" in k}):
        tail = key.split("/acc/", 1)[1]
        if tail.startswith("mean@"):
            found["mean@k"] = key
        elif tail.startswith("best@") and tail.endswith("/mean"):
            found["pass@k"] = key
    return found


def area_under_curve(steps: list[int], values: list[float]) -> float:
    """Normalised trapezoid area over ``[first, last]`` step: the mean value over training."""
    area = sum((s1 - s0) * (v0 + v1) / 2 for s0, s1, v0, v1 in zip(steps, steps[1:], values, values[1:]))
    return area / (steps[-1] - steps[0])


def greedy_curve(greedy: dict[str, dict[str, float]], which: str = "all") -> tuple[list[int], list[float]]:
    points = sorted((int(step), acc[which]) for step, acc in greedy.items() if which in acc)
    return [p[0] for p in points], [p[1] for p in points]


EVAL_CURVES = {"eval_greedy": "all", "eval_mean_at_k": "mean@k", "eval_pass_at_k": "pass@k"}
"""Summary names of the eval-set curves -> their key in a checkpoint's :func:`carry_task.eval_set_accuracy`."""
EVAL_FINALS = {"eval_greedy_final_d1": "1", "eval_greedy_final_d2": "2", "eval_greedy_final_d3": "3",
               "eval_mean_at_k_final_d3": "3-column mean@k", "eval_pass_at_k_final_d3": "3-column pass@k"}


def large_k_keys(eval_set: dict[str, dict[str, float]]) -> list[tuple[int, str]]:
    """``[(j, key)]`` of the large-k measure (:func:`carry_task.large_k_accuracy`) in a run's evaluation set, by
    ``j``; empty for runs without it."""
    keys = {key for point in eval_set.values() for key in point}
    return sorted((parsed[0], key) for key in keys if (parsed := carry_task.parse_large_k_key(key)))


def large_k_summary_name(j: int) -> str:
    """The summary's curve name of the large-k measure's pass@j (``_first``, ``_final``, ``_auc`` appended)."""
    return f"eval_d3_pass_at_{j}"


def large_k_columns(n: int, points: tuple[int, ...] = (1, 8)) -> tuple:
    """Summary-table columns ``(header, key, digits)`` of the large-k measure with ``n`` samples per problem:
    pass@j final and area under the curve for each ``j`` of ``points`` up to ``n``, and for ``n``; none when ``n``
    is 0 (the runs without it)."""
    columns = []
    for j in sorted({j for j in (*points, n) if 0 < j <= n}):
        name = large_k_summary_name(j)
        columns += [(f"3-column pass@{j} of {n} final", f"{name}_final", 3),
                    (f"3-column pass@{j} of {n} AUC", f"{name}_auc", 3)]
    return tuple(columns)


def run_summary(rows: list[dict], greedy: dict[str, dict[str, float]] | None = None,
                eval_set: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """Scalars of one run: first / final / area-under-curve of each accuracy curve (greedy: from the checkpoints
    when given, else verl's greedy validation; ``mean_at_k``, ``pass_at_k``: verl's validation at temperature 1;
    ``eval_*``: the evaluation set's measure of the checkpoints, when given), the greedy accuracy per difficulty,
    entropy at the first and last step, mean training signals, step times."""
    keys = accuracy_keys(rows)
    curves = {}
    if greedy:
        curves["greedy"] = greedy_curve(greedy)
        if "mean@k" in keys:
            curves["mean_at_k"] = series(rows, keys["mean@k"])
    elif "mean@k" in keys:
        curves["greedy"] = series(rows, keys["mean@k"])
    if "pass@k" in keys:
        curves["pass_at_k"] = series(rows, keys["pass@k"])
    if eval_set:
        curves.update({name: greedy_curve(eval_set, key) for name, key in EVAL_CURVES.items()})
        curves.update({large_k_summary_name(j): greedy_curve(eval_set, key) for j, key in large_k_keys(eval_set)})
    summary = {}
    for name, (steps, values) in curves.items():
        if len(steps) < 2:
            raise ValueError(f"a run needs at least two {name} points (before training and one test_freq)")
        summary.update({f"{name}_first": values[0], f"{name}_final": values[-1],
                        f"{name}_auc": area_under_curve(steps, values)})
    for difficulty in ("1", "2", "3"):
        if greedy and difficulty in greedy.get(str(max(map(int, greedy))), {}):
            summary[f"greedy_final_d{difficulty}"] = greedy_curve(greedy, difficulty)[1][-1]
    last_eval = eval_set[str(max(map(int, eval_set)))] if eval_set else {}
    summary.update({name: last_eval[key] for name, key in EVAL_FINALS.items() if key in last_eval})
    entropy = series(rows, "actor/entropy")[1]
    summary["entropy_first"], summary["entropy_final"] = entropy[0], entropy[-1]
    train = [r for r in rows if r["step"] >= 2]  # step 1 carries one-off warm-up (compilation, allocation)
    for key, name in (("actor/pg_clipfrac", "clipfrac"), ("actor/etr/pg_clipfrac_adv_pos", "clipfrac_pos"),
                      ("actor/etr/pg_clipfrac_adv_neg", "clipfrac_neg"), ("actor/entropy", "entropy"),
                      ("critic/score/mean", "train_reward"), ("actor/etr/eps_low_mean", "eps_low"),
                      ("actor/etr/eps_high_mean", "eps_high"), ("actor/etr/factor_mean", "factor"),
                      ("timing_s/step", "step_s"), ("timing_s/update_actor", "update_actor_s")):
        values = [float(r[key]) for r in train if key in r]
        if values:
            summary[name] = statistics.fmean(values)
    return summary


def spread(values: list[float], digits: int = 3) -> str:
    """``mean ± sample std (n)``; the std is over seeds."""
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


COLUMNS = (("eval-set greedy final", "eval_greedy_final", 3), ("eval-set greedy AUC", "eval_greedy_auc", 3),
           ("eval-set mean@k final", "eval_mean_at_k_final", 3),
           ("eval-set mean@k AUC", "eval_mean_at_k_auc", 3),
           ("eval-set pass@k final", "eval_pass_at_k_final", 3),
           ("eval-set pass@k AUC", "eval_pass_at_k_auc", 3),
           ("eval-set 3-column greedy final", "eval_greedy_final_d3", 3),
           ("eval-set 3-column pass@k final", "eval_pass_at_k_final_d3", 3),
           ("val greedy final", "greedy_final", 3), ("val greedy AUC", "greedy_auc", 3),
           ("val pass@k final", "pass_at_k_final", 3), ("val pass@k AUC", "pass_at_k_auc", 3),
           ("val mean@k final", "mean_at_k_final", 3), ("val mean@k AUC", "mean_at_k_auc", 3),
           ("val 3-column greedy final", "greedy_final_d3", 3),
           ("entropy first", "entropy_first", 3), ("entropy final", "entropy_final", 3),
           ("clip frac A>0", "clipfrac_pos", 4), ("clip frac A<0", "clipfrac_neg", 4),
           ("eps_low eff.", "eps_low", 3), ("eps_high eff.", "eps_high", 3))


COMPACT_COLUMNS = (("greedy final", "eval_greedy_final", 3), ("greedy AUC", "eval_greedy_auc", 3),
                   ("mean@k final", "eval_mean_at_k_final", 3), ("mean@k AUC", "eval_mean_at_k_auc", 3),
                   ("pass@k final", "eval_pass_at_k_final", 3), ("pass@k AUC", "eval_pass_at_k_auc", 3),
                   ("3-column greedy final", "eval_greedy_final_d3", 3),
                   ("3-column pass@k final", "eval_pass_at_k_final_d3", 3),
                   ("verl val mean@k final", "mean_at_k_final", 3), ("entropy final", "entropy_final", 3),
                   ("clip A>0", "clipfrac_pos", 4), ("clip A<0", "clipfrac_neg", 4),
                   ("eps_low eff.", "eps_low", 3), ("eps_high eff.", "eps_high", 3))
"""The columns docs/benchmarks.md shows (``results_compact.md``): the evaluation set's, verl's val mean@k, entropy,
clipping and the effective clip offsets (mean over responses and steps)."""


def results_table(summaries: dict[str, list[dict]], columns: tuple = COLUMNS) -> str:
    present = [c for c in columns if any(c[1] in r for runs in summaries.values() for r in runs)]
    lines = ["| arm | seeds | " + " | ".join(c[0] for c in present) + " |", "|---|---|" + "---|" * len(present)]
    for arm, runs in summaries.items():
        cells = []
        for _, key, digits in present:
            values = [r[key] for r in runs if key in r]
            cells.append(spread(values, digits) if values else "–")
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIRED = (("eval-set greedy final", "eval_greedy_final"), ("eval-set greedy AUC", "eval_greedy_auc"),
          ("eval-set mean@k AUC", "eval_mean_at_k_auc"), ("eval-set pass@k final", "eval_pass_at_k_final"),
          ("eval-set pass@k AUC", "eval_pass_at_k_auc"), ("val greedy final", "greedy_final"),
          ("val greedy AUC", "greedy_auc"), ("val pass@k final", "pass_at_k_final"),
          ("val pass@k AUC", "pass_at_k_auc"), ("val mean@k AUC", "mean_at_k_auc"), ("entropy final", "entropy_final"))


COMPACT_PAIRED = (("greedy final", "eval_greedy_final"), ("greedy AUC", "eval_greedy_auc"),
                  ("mean@k AUC", "eval_mean_at_k_auc"), ("pass@k final", "eval_pass_at_k_final"),
                  ("pass@k AUC", "eval_pass_at_k_auc"), ("3-column greedy final", "eval_greedy_final_d3"),
                  ("entropy final", "entropy_final"))


def paired_table(summaries: dict[str, list[dict]], seeds: list[int], reference: str = "grpo",
                 columns: tuple = PAIRED) -> str:
    """Per arm, its per-seed difference from ``reference`` (same seed: same data order and initial sampling):
    ``mean ± sd of (arm - reference)`` and how many seeds the arm is ahead on."""
    if reference not in summaries:
        return f"(no {reference} runs: no paired comparison)"
    present = [c for c in columns if any(c[1] in r for r in summaries[reference])]
    lines = [f"| arm - {reference} | " + " | ".join(c[0] for c in present) + " |", "|---|" + "---|" * len(present)]
    for arm, runs in summaries.items():
        if arm == reference:
            continue
        cells = []
        for _, key in present:
            diffs = [r[key] - g[key] for r, g in zip(runs, summaries[reference]) if key in r and key in g]
            ahead = sum(d > 0 for d in diffs)
            cells.append(f"{spread(diffs, 3)} ({ahead}/{len(diffs)} ahead)" if diffs else "–")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_time_table(summaries: dict[str, list[dict]], reference: str = "grpo") -> str:
    if reference not in summaries:
        return f"(no {reference} runs: no step-time ratio)"
    lines = ["| arm | step s (mean over steps >= 2) | ratio to grpo | update_actor s | ratio to grpo |",
             "|---|---|---|---|---|"]
    ref_step = statistics.fmean(r["step_s"] for r in summaries[reference])
    ref_update = statistics.fmean(r["update_actor_s"] for r in summaries[reference])
    for arm, runs in summaries.items():
        step = statistics.fmean(r["step_s"] for r in runs)
        update = statistics.fmean(r["update_actor_s"] for r in runs)
        lines.append(f"| {arm} | {spread([r['step_s'] for r in runs], 2)} | {step / ref_step:.3f} "
                     f"| {spread([r['update_actor_s'] for r in runs], 3)} | {update / ref_update:.3f} |")
    return "\n".join(lines)


PLOTS = {
    "learning_eval_greedy.png": ("eval-set greedy accuracy, mean and min-max over seeds", "eval:all"),
    "learning_eval_mean_at_k.png": ("eval-set mean@k at temperature 1", "eval:mean@k"),
    "learning_eval_pass_at_k.png": ("eval-set pass@k at temperature 1", "eval:pass@k"),
    "learning_greedy_accuracy.png": ("greedy validation accuracy, mean and min-max over seeds", "greedy"),
    "learning_pass_at_k.png": ("pass@k at temperature 1 (verl's best@k)", "pass@k"),
    "learning_entropy.png": ("policy entropy", "actor/entropy"),
    "learning_clip_fraction.png": ("clip fraction (A > 0 solid, A < 0 dashed)", "clip"),
    "learning_eps_high.png": ("effective upper clip offset eps_high * f", "actor/etr/eps_high_mean"),
}


def _curves(rows: list[dict], greedy: dict | None, eval_set: dict | None, key: str) -> dict[str, dict[int, float]]:
    """The curves one plot draws for one run: ``{suffix: {step: value}}``."""
    if key.startswith("eval:"):
        return {"": dict(zip(*greedy_curve(eval_set, key.split(":", 1)[1])))} if eval_set else {}
    if key == "greedy":
        return {"": dict(zip(*greedy_curve(greedy)))} if greedy else (
            {"": dict(zip(*series(rows, accuracy_keys(rows)["mean@k"])))} if "mean@k" in accuracy_keys(rows)
            else {})
    if key == "pass@k":
        found = accuracy_keys(rows).get("pass@k")
        return {"": dict(zip(*series(rows, found)))} if found else {}
    if key == "clip":
        return {"": dict(zip(*series(rows, "actor/etr/pg_clipfrac_adv_pos"))),
                " (A<0)": dict(zip(*series(rows, "actor/etr/pg_clipfrac_adv_neg")))}
    return {"": dict(zip(*series(rows, key)))}


def arm_colors(n_arms: int) -> list:
    """One colour per arm: ``None`` (matplotlib's default cycle, 10 colours) for up to 10 arms, else ``tab20``'s
    20, repeated only past 20 arms."""
    if n_arms <= 10:
        return [None] * n_arms
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    return [palette[i % len(palette)] for i in range(n_arms)]


def plot(runs: dict[str, list[list[dict]]], greedy: dict[str, list[dict | None]],
         eval_set: dict[str, list[dict | None]], out_dir: Path) -> list[Path]:
    """The PNGs of :data:`PLOTS` that have data (no eval-set ones for runs without the evaluation set): per
    arm, the mean over seeds and the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = dict(PLOTS)
    large_k = sorted({key for sets in eval_set.values() for e in sets if e for _, key in large_k_keys(e)},
                     key=carry_task.parse_large_k_key)
    if large_k:  # pass@n over training, n the largest j measured
        plots["learning_eval_large_k.png"] = (f"eval-set {large_k[-1]} samples at temperature 1",
                                              f"eval:{large_k[-1]}")
    written = []
    for filename, (title, key) in plots.items():
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        for (arm, seeds), color in zip(runs.items(), arm_colors(len(runs))):
            per_seed = [_curves(rows, g, e, key) for rows, g, e in zip(seeds, greedy[arm], eval_set[arm])]
            for suffix in (per_seed[0] if per_seed else {}):
                curves = [c.get(suffix, {}) for c in per_seed]
                steps = sorted(set.intersection(*(set(c) for c in curves)))
                if not steps:
                    continue
                mean = [statistics.fmean(c[s] for c in curves) for s in steps]
                line, = ax.plot(steps, mean, "--" if suffix else "-", color=color,
                                marker="o" if key in ("greedy", "pass@k") or key.startswith("eval:") else None,
                                markersize=3,
                                label=arm if not suffix else None)
                color = line.get_color()
                ax.fill_between(steps, [min(c[s] for c in curves) for s in steps],
                                [max(c[s] for c in curves) for s in steps], color=color, alpha=0.10)
        if not ax.get_lines():
            plt.close(fig)
            continue
        written.append(save_figure(fig, ax, title, "training step", out_dir / filename, ncol=2))
    if large_k:
        written.append(plot_pass_at_j(eval_set, out_dir / "learning_eval_pass_at_j.png"))
    return written


def plot_pass_at_j(eval_set: dict[str, list[dict | None]], path: Path) -> Path:
    """The narrowing picture: the large-k measure's pass@j against j (log scale) for the warm start (step 0) and
    for each arm's last checkpoint (mean over seeds, min-max band). A policy that sharpens without narrowing lies
    above the warm start at every j; one that narrows crosses below it at large j."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    warm_drawn = False
    for (arm, sets), color in zip(eval_set.items(), arm_colors(len(eval_set))):
        sets = [e for e in sets if e and large_k_keys(e)]
        if not sets:
            continue
        keys = large_k_keys(sets[0])
        js = [j for j, _ in keys]
        if not warm_drawn:
            ax.plot(js, [sets[0]["0"][key] for _, key in keys], "k--", marker="o", markersize=3,
                    label="warm start (step 0)")
            warm_drawn = True
        finals = [e[str(max(map(int, e)))] for e in sets]
        values = [[final[key] for final in finals] for _, key in keys]
        line, = ax.plot(js, [statistics.fmean(v) for v in values], "-", color=color, marker="o", markersize=3,
                        label=f"{arm} (step {max(map(int, sets[0]))})")
        ax.fill_between(js, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.10)
    ax.set_xscale("log", base=2)
    return save_figure(fig, ax, "eval-set 3-column sums: unbiased pass@j at temperature 1, warm start and last "
                       "checkpoint", "j (samples)", path)


def save_figure(fig, ax, title: str, xlabel: str, path: Path, fontsize: int = 7, ncol: int = 1) -> Path:
    """The benchmarks' plot style: title, axis label, grid and the legend (when a line has a label), then the PNG
    written and the figure closed."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize, ncol=ncol)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_checkpoint_measure(out: Path, arm: str, seed: int, measure: str) -> dict | None:
    """A run's ``seed<n>.<measure>.json`` (``greedy`` or ``eval``), if it was measured."""
    path = out / "runs" / arm / f"seed{seed}.{measure}.json"
    return json.loads(path.read_text()) if path.exists() else None


CHECKPOINT_COLUMNS = (("greedy", "all", 3), ("3-column greedy", "3", 3), ("mean@k", "mean@k", 3),
                      ("pass@k", "pass@k", 3), ("3-column pass@k", "3-column pass@k", 3))
"""Per-checkpoint table columns: header -> key in a checkpoint's :func:`carry_task.eval_set_accuracy`, digits."""


def checkpoint_rows(arm: str, rows: list[dict], eval_set: dict[str, dict[str, float]], steps: list[int],
                    window: int = 5, columns: tuple = CHECKPOINT_COLUMNS) -> list[str]:
    """One markdown row per checkpoint step of one run: the evaluation set's accuracies at that step, and verl's
    ``actor/entropy`` and ``actor/pg_clipfrac`` averaged over the ``window`` training steps up to it (``s - window
    + 1 .. s``; step 0, before training, has none). A step without a measured checkpoint is an error, not a gap."""
    missing = [s for s in steps if str(s) not in eval_set]
    if missing:
        raise ValueError(f"{arm}: no evaluation-set checkpoint at step(s) {missing}; measured: "
                         f"{sorted(map(int, eval_set))}")
    lines = []
    for step in steps:
        accuracy = eval_set[str(step)]
        cells = [f"{accuracy[key]:.{digits}f}" if key in accuracy else "–" for _, key, digits in columns]
        recent = [r for r in rows if step - window < r["step"] <= step]
        for key, digits in (("actor/entropy", 3), ("actor/pg_clipfrac", 4)):
            values = [float(r[key]) for r in recent if key in r]
            cells.append(f"{statistics.fmean(values):.{digits}f}" if values else "–")
        lines.append(f"| {arm} | {step} | " + " | ".join(cells) + " |")
    return lines


def named_k(header: str, k: int) -> str:
    """A column header with the evaluation's ``k`` written in (``pass@k`` -> ``pass@8``); headers only, so an arm
    name that contains ``@k`` is left alone."""
    return header.replace("@k", f"@{k}")


def checkpoint_table(out: Path, arms: list[Arm], seed: int, steps: list[int], samples: int,
                     window: int = 5, large_k: int = 0) -> str:
    """The per-checkpoint table of one seed, every arm (see :func:`checkpoint_rows`), from the committed
    ``runs/<arm>/seed<n>.eval.json`` and ``seed<n>.jsonl``; ``samples`` is the evaluation set's ``k``, ``large_k``
    its large-k measure's sample count (0: none; else columns pass@1 and pass@large_k of it)."""
    columns = tuple((named_k(name, samples), key, digits) for name, key, digits in CHECKPOINT_COLUMNS)
    if large_k:
        columns += tuple((key, key, 3) for key in (carry_task.large_k_key(j, large_k) for j in sorted({1, large_k})))
    header = ["arm", "step", *(name for name, _, _ in columns),
              f"entropy (mean of the {window} steps to here)", "clip fraction (same)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        eval_set = read_checkpoint_measure(out, arm.name, seed, "eval")
        if eval_set is None:
            raise ValueError(f"{arm.name} seed {seed}: no evaluation set in {out / 'runs' / arm.name}")
        lines += checkpoint_rows(arm.name, read_metrics(out / "runs" / arm.name / f"seed{seed}.jsonl"), eval_set,
                                 steps, window, columns)
    return "\n".join(lines)


def breadth(eval_set: dict[str, dict[str, float]], n: int) -> dict:
    """One run's narrowing at large ``j``, from its evaluation set's large-k measure with ``n`` samples per problem
    (``carry_task.large_k_accuracy`` at every checkpoint, step 0 = the warm start): pass@n's area under the curve
    (``auc``), how many checkpoints after step 0 fall below step 0's pass@n (``below`` of ``later``: breadth
    lost), the lowest (``lowest`` at ``lowest_step``) and the ``final`` pass@n, its largest change between
    neighbouring checkpoints (``largest_move``: how far one checkpoint, e.g. the final, is from its neighbours), and
    per ``j`` the gain ``pass@j(last) - pass@j(0)`` (``gains``; negative at large ``j`` while positive at ``j = 1``
    is the crossing the paper's exploration claim is about)."""
    measured = sorted(map(int, eval_set))
    if len(measured) < 2 or measured[0] != 0:
        raise ValueError(f"breadth needs step 0 and a later checkpoint; measured: {measured}")
    top = carry_task.large_k_key(n, n)
    steps, curve = greedy_curve(eval_set, top)
    if steps != measured:
        raise ValueError(f"no {top!r} at step(s) {sorted(set(measured) - set(steps))}: these runs were not measured "
                         f"with --eval-large-k {n}")
    lowest_step, lowest = min(zip(steps[1:], curve[1:]), key=lambda point: point[1])
    first, last = eval_set["0"], eval_set[str(steps[-1])]
    return {"auc": area_under_curve(steps, curve), "below": sum(value < curve[0] for value in curve[1:]),
            "later": len(steps) - 1, "lowest": lowest, "lowest_step": lowest_step, "final": curve[-1],
            "largest_move": max(abs(after - before) for before, after in zip(curve, curve[1:])),
            "gains": {j: last[carry_task.large_k_key(j, n)] - first[carry_task.large_k_key(j, n)]
                      for j in carry_task.large_k_points(n)}}


def breadth_table(eval_sets: dict[str, list[dict | None]], seeds: list[int], n: int) -> str:
    """Per arm and seed, :func:`breadth` of the large-k measure (``n`` samples per problem), and per arm the
    checkpoints below step 0 summed over its seeds."""
    points = carry_task.large_k_points(n)
    lines = [f"| arm | seed | 3-column pass@{n} AUC | checkpoints below step 0 | lowest (step) | final "
             f"| largest move between neighbouring checkpoints | gain at j = {', '.join(map(str, points))} |",
             "|---|---|---|---|---|---|---|---|"]
    totals = []
    for arm, runs in eval_sets.items():
        below = later = 0
        for seed, eval_set in zip(seeds, runs):
            if eval_set is None:
                raise ValueError(f"{arm} seed {seed}: no evaluation set (runs/{arm}/seed{seed}.eval.json)")
            try:
                run = breadth(eval_set, n)
            except ValueError as error:
                raise ValueError(f"{arm} seed {seed}: {error}") from None
            below, later = below + run["below"], later + run["later"]
            gains = ", ".join(f"{run['gains'][j]:+.3f}" for j in points)
            lines.append(f"| {arm} | {seed} | {run['auc']:.3f} | {run['below']} of {run['later']} | "
                         f"{run['lowest']:.3f} ({run['lowest_step']}) | {run['final']:.3f} | "
                         f"{run['largest_move']:.3f} | {gains} |")
        totals.append(f"{arm} {below} of {later}")
    return "\n".join(lines) + "\n\nCheckpoints below step 0, all seeds: " + "; ".join(totals) + "."


def report(out: Path, arms: list[Arm], seeds: list[int], settings: Settings, docs: Path | None,
           timing_seeds: list[int] | None = None) -> str:
    runs = {arm.name: [read_metrics(out / "runs" / arm.name / f"seed{s}.jsonl") for s in seeds] for arm in arms}
    greedy = {arm.name: [read_checkpoint_measure(out, arm.name, s, "greedy") for s in seeds] for arm in arms}
    eval_set = {arm.name: [read_checkpoint_measure(out, arm.name, s, "eval") for s in seeds] for arm in arms}
    summaries = {name: [run_summary(rows, g, e) for rows, g, e in zip(seed_rows, greedy[name], eval_set[name])]
                 for name, seed_rows in runs.items()}
    timing_seeds = timing_seeds or seeds
    timed = {name: [summary for seed, summary in zip(seeds, runs) if seed in timing_seeds]
             for name, runs in summaries.items()}
    (out / "summaries.json").write_text(json.dumps(summaries, indent=1))
    figure_dir = docs or out
    figure_dir.mkdir(parents=True, exist_ok=True)
    plot(runs, greedy, eval_set, figure_dir)
    overrides = "; ".join(f"{a.name} = {a.preset} + {a.loss_overrides}" for a in arms if a.loss_overrides)
    n = settings.eval_large_k  # samples per problem of the large-k measure (0: not measured)
    narrowing = breadth_table(eval_set, seeds, n) if n else ""
    text = "\n".join([
        f"Setup: {settings.describe()}; seeds {seeds}.",
        f"Arms with overrides: {overrides}." if overrides else "",
        "",
        results_table(summaries, COLUMNS + large_k_columns(n)),
        "",
        "Columns: `eval-set`, the evaluation set of the checkpoints (carry task: `carry_task.eval_set_accuracy`); "
        "`val`, verl's validation prompts (greedy: on the checkpoints, or verl's greedy validation; mean@k and "
        "pass@k: verl's validation at temperature 1). Mean ± sample sd over seeds.",
        "",
        "Paired by seed (same data order and sampling seed), each arm minus GRPO:",
        "",
        paired_table(summaries, seeds, columns=PAIRED + tuple(c[:2] for c in large_k_columns(n))),
        "",
        "Step time (verl's `timing_s/step` and `timing_s/update_actor`, mean over steps 2..N and over seeds "
        f"{timing_seeds}):",
        "",
        step_time_table(timed),
        *(["", f"Breadth at large k, run by run (3-column pass@j from {n} samples per problem, every checkpoint):",
           "", narrowing] if n else []),
    ])
    (out / "results.md").write_text(text + "\n")
    k = settings.val_samples
    large_k = large_k_columns(n, points=(1,))  # pass@1 and pass@n of the large-k measure, when the runs have it
    compact_columns = tuple((named_k(header, k), key, digits) for header, key, digits in COMPACT_COLUMNS) + large_k
    compact_paired = tuple((named_k(header, k), key) for header, key in COMPACT_PAIRED) + tuple(c[:2] for c in large_k)
    (out / "results_compact.md").write_text(results_table(summaries, compact_columns) + "\n\n"
                                            + paired_table(summaries, seeds, columns=compact_paired) + "\n")
    if n:
        (out / "breadth.md").write_text(narrowing + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/learning"))
    parser.add_argument("--docs", type=Path, default=None, help="where the PNGs go (default: --out)")
    parser.add_argument("--task-dir", type=Path, default=None,
                        help="the task (warm-started model, data) to train from, built there if absent (default: "
                             "OUT/task); the warm start depends on the CPU, so a sweep split over machines names a "
                             "committed one: docs/learning_carry/task_h15")
    parser.add_argument("--arms", default=",".join(PRESETS), help="comma-separated arm names")
    parser.add_argument("--arm", action="append", default=[], help="define an arm NAME=PRESET[:etr_key=value,...]")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--task", choices=sorted(TASKS), default=Settings.task)
    parser.add_argument("--warm-steps", type=int, default=Settings.warm_steps, help="carry task: warm-start steps")
    parser.add_argument("--noise", type=float, default=Settings.noise,
                        help="carry task: share of demonstration column sums written off by one")
    parser.add_argument("--hard-share", type=float, default=Settings.hard_share,
                        help="carry task: share of 3-column sums among the demonstrations (default: the task's mix)")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--lr", type=float, default=Settings.lr)
    parser.add_argument("--prompts-per-step", type=int, default=Settings.prompts_per_step,
                        help="prompts per training step (each answered group-size times)")
    parser.add_argument("--group-size", type=int, default=Settings.group_size,
                        help="responses per prompt (GRPO's group; smaller: coarser pass rates, more groups whose "
                             "responses all score alike)")
    parser.add_argument("--updates-per-step", type=int, default=Settings.updates_per_step,
                        help="PPO mini-batches per step (more: updates further off-policy, clipping binds more)")
    parser.add_argument("--epochs", type=int, default=Settings.epochs,
                        help="PPO epochs over each step's rollouts (verl's actor.ppo_epochs)")
    parser.add_argument("--test-freq", type=int, default=Settings.test_freq, metavar="STEPS",
                        help="save and measure a checkpoint every STEPS training steps, and at the last step (each "
                             "checkpoint's measures take about 15 s here, 45 s with --eval-large-k 64)")
    parser.add_argument("--eval-large-k", type=int, default=Settings.eval_large_k, metavar="N",
                        help="carry task: also sample N responses per problem on the evaluation set's 3-column sums "
                             "(about 300 problems) at every checkpoint, and report the unbiased pass@j for j = 1, 2, "
                             "4, ..., N from them (e.g. 64: about 30 s per checkpoint; 0: none)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: etr, seed 0, 2 steps, validation each step (carry: a 100-step warm start, "
                             "2 samples per validation prompt, the large-k measure with 4 samples unless "
                             "--eval-large-k says otherwise)")
    parser.add_argument("--report-only", action="store_true", help="aggregate existing runs, train nothing")
    parser.add_argument("--checkpoints", default=None, metavar="STEPS",
                        help="also print, per seed, a row per arm at each of these checkpoint steps (e.g. "
                             "0,10,30,50,70,100): the evaluation set's accuracies there, entropy and clip fraction "
                             "averaged over the 5 steps up to it; written to checkpoints_seed<n>.md under --out")
    parser.add_argument("--timing-seeds", default=None,
                        help="seeds whose step times are reported (default: all; leave out runs that shared the "
                             "machine with other work)")
    args = parser.parse_args(argv)
    if not 1 <= args.test_freq <= args.steps:
        parser.error(f"--test-freq {args.test_freq}: checkpoints are saved every 1 to --steps ({args.steps}) steps; "
                     f"use e.g. --test-freq {min(Settings.test_freq, args.steps)}")
    if args.eval_large_k == 1 or args.eval_large_k < 0:
        parser.error(f"--eval-large-k {args.eval_large_k}: pass@j at large j needs 2 or more samples per problem "
                     "(e.g. 64), or 0 for none")
    if args.eval_large_k and args.task != "carry":
        parser.error(f"--eval-large-k is a measure of the carry task's evaluation set; task {args.task} has none")
    if args.group_size < 2:
        parser.error(f"--group-size {args.group_size}: a group needs at least 2 responses for GRPO's baseline "
                     "(its mean) to carry a signal; use 2 or more")

    try:
        defined = defined_arms(args.arm)
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(task=args.task, steps=args.steps, lr=args.lr, group_size=args.group_size,
                        updates_per_step=args.updates_per_step,
                        epochs=args.epochs, prompts_per_step=args.prompts_per_step,
                        warm_steps=args.warm_steps, noise=args.noise, hard_share=args.hard_share,
                        eval_large_k=args.eval_large_k, test_freq=args.test_freq)
    if args.task == "digits":  # the dated appendix's set-up: greedy validation in verl, 3-token answers
        settings.prompts_per_step, settings.steps, settings.val_samples, settings.max_response_length = 8, 30, 0, 10
        settings.steps = args.steps if args.steps != Settings.steps else 30
        settings.epochs = args.epochs if args.epochs != Settings.epochs else 1
        settings.actor_compute = "bf16"
        settings.eval_problems = settings.eval_sampled = 0  # verl's greedy validation is its measure
        settings.verl_val_each_checkpoint = True
    names, seeds = args.arms, args.seeds
    if args.quick:  # the pipeline, not a result: a short warm start and 2 samples per validation prompt
        names, seeds, settings.steps, settings.test_freq = "etr", "0", 2, 1
        if settings.task == "carry":
            settings.warm_steps, settings.val_samples = 100, 2
            settings.eval_problems, settings.eval_sampled = 64, 16
            settings.eval_large_k = args.eval_large_k or 4
    out = args.out.resolve()
    if args.report_only:
        settings = Settings.load(out)  # the settings the runs were made with
    elif (out / "settings.json").exists() and Settings.load(out) != settings:
        parser.error(f"{out} holds runs made with {Settings.load(out)}; use another --out for {settings}")
    seed_list = [int(s) for s in seeds.split(",")]
    checkpoint_steps = []
    if args.checkpoints:  # checked before any training: a run's checkpoints are every test_freq steps and the last
        if not settings.eval_problems:
            parser.error("--checkpoints reads the evaluation set of each checkpoint, which these runs do not measure "
                         f"(task {settings.task}, eval_problems 0); leave --checkpoints out")
        saved = {0, settings.steps, *range(settings.test_freq, settings.steps + 1, settings.test_freq)}
        try:
            checkpoint_steps = [int(s) for s in args.checkpoints.split(",")]
        except ValueError:
            parser.error(f"--checkpoints {args.checkpoints!r}: expected comma-separated step numbers, e.g. 0,10,30")
        if not set(checkpoint_steps) <= saved:
            parser.error(f"--checkpoints {sorted(set(checkpoint_steps) - saved)}: no checkpoint is saved there; "
                         f"the runs save steps {sorted(saved)} (0, every {settings.test_freq}, and {settings.steps})")
    if MATCHED_CONTROL in names.split(",") and MATCHED_CONTROL not in defined:
        try:
            matched = matched_range(out, seed_list, settings.steps)
        except ValueError as error:
            parser.error(str(error))
        defined[MATCHED_CONTROL] = matched_control(matched)
        print(f"[learning] {MATCHED_CONTROL}: static range eps_low {matched['eps_low']}, eps_high "
              f"{matched['eps_high']} ({out / 'matched_range.json'})")
    unknown = [n for n in names.split(",") if n not in defined]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; defined: {sorted(defined)} (add one with --arm)")
    arms = [defined[n] for n in names.split(",")]

    if not args.report_only:
        # one task for every run: the seed varies the data order, rollouts and optimiser initialisation only
        warm_start = ({"warm_steps": settings.warm_steps, "noise": settings.noise, "hard_share": settings.hard_share}
                      if settings.task == "carry" else {})
        build_task = TASKS[settings.task]
        task_dir = (args.task_dir or out / "task").resolve()
        built = task_dir / "task.json"
        if args.task_dir and built.exists() and settings.task == "carry":
            spec = json.loads(built.read_text())["spec"]
            wanted = {"warm_steps": settings.warm_steps, "noise": settings.noise, "hard_share": settings.hard_share}
            if {key: spec.get(key) for key in wanted} != wanted:
                parser.error(f"--task-dir {task_dir} holds a warm start built with {spec}, not {wanted}: pass its "
                             "--warm-steps/--noise/--hard-share, or another --task-dir")
        task = build_task(task_dir, seed=0, log=lambda m: print("    " + m), **warm_start)
        out.mkdir(parents=True, exist_ok=True)
        settings.save(out)
        start = time.time()
        for seed in seed_list:  # seeds outermost: arms interleave, so machine load drifts hit them alike
            for arm in arms:
                run_arm(task, arm, seed, settings, out)
        print(f"[learning] all runs done in {time.time() - start:.0f} s")
    timing_seeds = [int(s) for s in args.timing_seeds.split(",")] if args.timing_seeds else None
    print(report(out, arms, seed_list, settings, args.docs, timing_seeds))
    if checkpoint_steps:
        for seed in seed_list:
            try:
                table = checkpoint_table(out, arms, seed, checkpoint_steps, settings.val_samples,
                                         large_k=settings.eval_large_k)
            except ValueError as error:
                parser.error(str(error))
            (out / f"checkpoints_seed{seed}.md").write_text(table + "\n")
            print(f"\nPer checkpoint, seed {seed}:\n\n{table}")


if __name__ == "__main__":
    sys.exit(main())
