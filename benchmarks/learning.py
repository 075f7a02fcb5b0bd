"""Learning benchmark: GRPO, DAPO clip-higher, ETR and its ablations on the demo's miniature task, several seeds.

Every run is verl 0.9.1's real V1 trainer on the local CPU backend (``python -m etr_verl.main backend=local_cpu``,
through :mod:`etr_verl.demo.runner`), with the same task, the same number of steps and the same rollouts per step
(prompts x group size) for every arm. Arms differ only in the algorithm preset (and, for coefficient arms, in
``policy_loss.etr_*`` overrides). Per run, verl's own JSONL metrics are kept; this script then aggregates them
over seeds (mean and spread) into a markdown table and PNG plots.

    python benchmarks/learning.py                      # the documented full run (docs/benchmarks.md)
    python benchmarks/learning.py --quick              # CI smoke: one ETR run of 2 steps, same pipeline
    python benchmarks/learning.py --arms grpo,etr,etr_linear,etr_upper --seeds 0,1,2   # any algo= preset is an arm
    python benchmarks/learning.py --arm etr_a2=etr:etr_alpha=2.0 --arms etr_a2   # an extra coefficient arm
    python benchmarks/learning.py --report-only        # re-aggregate the runs already on disk

Runs that finished (their JSONL reaches the last step) are reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from etr_verl.demo.report import read_metrics, series, val_key
from etr_verl.demo.runner import run_trainer, trainer_overrides
from etr_verl.demo.task import build_task

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


@dataclass
class Settings:
    steps: int = 30
    prompts_per_step: int = 8
    group_size: int = 8
    updates_per_step: int = 4
    lr: float = 1e-3
    test_freq: int = 5

    def save(self, out: Path) -> None:
        (out / "settings.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, out: Path) -> "Settings":
        return cls(**json.loads((out / "settings.json").read_text()))

    def describe(self) -> str:
        return (f"{self.steps} steps x {self.prompts_per_step} prompts x {self.group_size} responses, "
                f"{self.updates_per_step} PPO mini-batches per step, lr {self.lr:g}, validation every "
                f"{self.test_freq} steps (greedy, 64 prompts)")


def run_arm(task: dict, arm: Arm, seed: int, settings: Settings, out: Path) -> Path:
    """One training run; returns its JSONL (reused if a previous run already reached the last step)."""
    run_dir = out / "runs" / arm.name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / f"seed{seed}.jsonl"
    if metrics.exists() and any(r["step"] == settings.steps for r in read_metrics(metrics)):
        print(f"[learning] {arm.name} seed {seed}: reusing {metrics}")
        return metrics
    overrides = trainer_overrides(
        task, arm.preset, settings.steps, seed, run_dir, prompts_per_step=settings.prompts_per_step,
        group_size=settings.group_size, updates_per_step=settings.updates_per_step, test_freq=settings.test_freq,
        lr=settings.lr,
    )
    overrides = [o for o in overrides if not o.startswith("trainer.experiment_name=")]
    overrides += [f"trainer.experiment_name={arm.name}_seed{seed}", *arm.overrides()]
    start = time.time()
    print(f"[learning] {arm.name} seed {seed}: {settings.steps} steps")
    run_trainer(overrides, metrics, run_dir / f"seed{seed}.log", echo=lambda line: None)
    print(f"[learning] {arm.name} seed {seed}: done in {time.time() - start:.0f} s")
    return metrics


# ---- aggregation ----------------------------------------------------------------------------------------------

def run_summary(rows: list[dict]) -> dict[str, float]:
    """Scalars of one run: final / area-under-curve validation accuracy, mean training signals, step times."""
    vk = val_key(rows)
    steps, acc = series(rows, vk) if vk else ([], [])
    if len(steps) < 2:
        raise ValueError("a run needs at least two validation points (val_before_train and one test_freq)")
    # normalised trapezoid area under the validation curve over [first, last] step: mean accuracy over training
    area = sum((s1 - s0) * (a0 + a1) / 2 for s0, s1, a0, a1 in zip(steps, steps[1:], acc, acc[1:]))
    train = [r for r in rows if r["step"] >= 2]  # step 1 carries one-off warm-up (compilation, allocation)
    summary = {
        "val_acc_first": acc[0],
        "val_acc_final": acc[-1],
        "val_acc_auc": area / (steps[-1] - steps[0]),
        "entropy_final": series(rows, "actor/entropy")[1][-1],
    }
    for key, name in (("actor/pg_clipfrac", "clipfrac"), ("actor/entropy", "entropy"),
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


def results_table(summaries: dict[str, list[dict]]) -> str:
    columns = (("val acc final", "val_acc_final", 3), ("val acc AUC", "val_acc_auc", 3),
               ("train reward", "train_reward", 3), ("entropy final", "entropy_final", 3),
               ("clip fraction", "clipfrac", 4), ("eps_low eff.", "eps_low", 3), ("eps_high eff.", "eps_high", 3))
    lines = ["| arm | seeds | " + " | ".join(c[0] for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for arm, runs in summaries.items():
        cells = []
        for _, key, digits in columns:
            values = [r[key] for r in runs if key in r]
            cells.append(spread(values, digits) if values else "static")
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
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
    "learning_val_accuracy.png": ("validation accuracy (greedy), mean and min-max over seeds", "val"),
    "learning_entropy.png": ("policy entropy", "actor/entropy"),
    "learning_clip_fraction.png": ("clip fraction", "actor/pg_clipfrac"),
    "learning_eps_high.png": ("effective upper clip offset eps_high * f (static: 0.2 / 0.28)",
                              "actor/etr/eps_high_mean"),
}


def plot(runs: dict[str, list[list[dict]]], out_dir: Path, static_high: dict[str, float]) -> list[Path]:
    """The PNGs of :data:`PLOTS`: per arm, the mean over seeds and the min-max band. ``static_high``: the fixed
    ``clip_ratio_high`` of the arms without elastic bounds (drawn as dotted lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for filename, (title, key) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for arm, seeds in runs.items():
            curves = []
            for rows in seeds:
                k = val_key(rows) if key == "val" else key
                curves.append(dict(zip(*series(rows, k))) if k else {})
            steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not steps and key == "actor/etr/eps_high_mean" and arm in static_high:
                ax.axhline(static_high[arm], linestyle=":", color=ax._get_lines.get_next_color(),
                           label=f"{arm} (static)")
                continue
            if not steps:
                continue
            mean = [statistics.fmean(c[s] for c in curves) for s in steps]
            line, = ax.plot(steps, mean, marker="o" if key == "val" else None, markersize=3, label=arm)
            ax.fill_between(steps, [min(c[s] for c in curves) for s in steps],
                            [max(c[s] for c in curves) for s in steps], color=line.get_color(), alpha=0.12)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(out: Path, arms: list[Arm], seeds: list[int], settings: Settings, docs: Path | None,
           timing_seeds: list[int] | None = None) -> str:
    runs = {arm.name: [read_metrics(out / "runs" / arm.name / f"seed{s}.jsonl") for s in seeds] for arm in arms}
    summaries = {name: [run_summary(rows) for rows in seed_rows] for name, seed_rows in runs.items()}
    timing_seeds = timing_seeds or seeds
    timed = {name: [summary for seed, summary in zip(seeds, runs) if seed in timing_seeds]
             for name, runs in summaries.items()}
    (out / "summaries.json").write_text(json.dumps(summaries, indent=1))
    figure_dir = docs or out
    figure_dir.mkdir(parents=True, exist_ok=True)
    preset_high = {"grpo": 0.2, "dapo": 0.28}  # etr_verl/hydra_configs/algo/{grpo,dapo}.yaml
    static_high = {a.name: float(a.loss_overrides.get("clip_ratio_high", preset_high[a.preset]))
                   for a in arms if a.preset in preset_high}
    plot(runs, figure_dir, static_high)
    overrides = "; ".join(f"{a.name} = {a.preset} + {a.loss_overrides}" for a in arms if a.loss_overrides)
    text = "\n".join([
        f"Setup: {settings.describe()}; seeds {seeds}.",
        f"Coefficient arms: {overrides}." if overrides else "",
        "",
        results_table(summaries),
        "",
        "Step time (verl's `timing_s/step` and `timing_s/update_actor`, mean over steps 2..N and over seeds "
        f"{timing_seeds}):",
        "",
        step_time_table(timed),
    ])
    (out / "results.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/learning"))
    parser.add_argument("--docs", type=Path, default=None, help="where the PNGs go (default: --out)")
    parser.add_argument("--arms", default=",".join(PRESETS), help="comma-separated arm names")
    parser.add_argument("--arm", action="append", default=[], help="define an arm NAME=PRESET[:etr_key=value,...]")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--lr", type=float, default=Settings.lr)
    parser.add_argument("--quick", action="store_true", help="CI smoke: etr, seed 0, 2 steps, validation each step")
    parser.add_argument("--report-only", action="store_true", help="aggregate existing runs, train nothing")
    parser.add_argument("--timing-seeds", default=None,
                        help="seeds whose step times are reported (default: all; leave out runs that shared the "
                             "machine with other work)")
    args = parser.parse_args(argv)

    defined = {name: Arm(name, name) for name in ALL_PRESETS}
    try:
        defined.update({arm.name: arm for arm in map(parse_arm, args.arm)})
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(steps=args.steps, lr=args.lr)
    names, seeds = args.arms, args.seeds
    if args.quick:
        names, seeds, settings.steps, settings.test_freq = "etr", "0", 2, 1
    out = args.out.resolve()
    if args.report_only:
        settings = Settings.load(out)  # the settings the runs were made with
    elif (out / "settings.json").exists() and Settings.load(out) != settings:
        parser.error(f"{out} holds runs made with {Settings.load(out)}; use another --out for {settings}")
    unknown = [n for n in names.split(",") if n not in defined]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; defined: {sorted(defined)} (add one with --arm)")
    arms = [defined[n] for n in names.split(",")]
    seed_list = [int(s) for s in seeds.split(",")]

    # one task for every run: the seed varies the data order, rollouts and initialisation of the optimiser only
    task = build_task(out / "task", seed=0, log=lambda m: print("    " + m))
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        settings.save(out)
        start = time.time()
        for seed in seed_list:  # seeds outermost: arms interleave, so machine load drifts hit them alike
            for arm in arms:
                run_arm(task, arm, seed, settings, out)
        print(f"[learning] all runs done in {time.time() - start:.0f} s")
    timing_seeds = [int(s) for s in args.timing_seeds.split(",")] if args.timing_seeds else None
    print(report(out, arms, seed_list, settings, args.docs, timing_seeds))


if __name__ == "__main__":
    sys.exit(main())
