"""Issue 30's comparison on SmolLM2-135M-Instruct: the arms side by side and paired by seed, from the run records
``benchmarks/smollm2_runs.py`` keeps (``settings.json``, ``eval_step*.json``, ``runs/ARM/seedS/metrics.jsonl``).

Reads only the records, trains nothing; a run counts once it is finished (its metrics reach the last step and every
checkpoint is measured). Writes the Markdown tables into ``--out`` (a table per arm, the mean ± sd over seeds; the
per-seed differences from GRPO, each over the seeds both arms finished; the runs still missing) and four plots next to
them:

    python benchmarks/smollm2_compare.py --out docs/smollm2/comparison --arms grpo,dapo,etr,grpo_matched \\
        --seeds 0,1,2

- ``smollm2_mean_at_k.png``: held-out mean@k over training (the start is step 0);
- ``smollm2_entropy.png``: the policy's token entropy at each step (verl's ``actor/entropy``);
- ``smollm2_clipfrac.png``: clipped share of tokens at each step, at ``A > 0`` and at ``A < 0``;
- ``smollm2_pass_at_j.png``: pass@j against j at the start and at each arm's last step (breadth; a policy that
  narrows falls below the start at large j).

Each curve is the mean over the arm's finished seeds with their min-max band.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling benchmark modules, however this script is loaded
    sys.path.insert(0, str(HERE))

from learning import arm_colors, area_under_curve, paired_table, results_table, save_figure  # noqa: E402
from smollm2_runs import Settings, checkpoint_steps, measure_paths, run_record, step_measured  # noqa: E402

from etr_verl.demo.report import read_metrics  # noqa: E402

REFERENCE = "grpo"
STEP_SIGNALS = {"entropy": "actor/entropy", "clipfrac_pos": "actor/etr/pg_clipfrac_adv_pos",
                "clipfrac_neg": "actor/etr/pg_clipfrac_adv_neg"}
"""Per-step training signals the plots draw (name -> verl/ETR metric key)."""


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed{seed}"


def finished(out: Path, arm: str, seed: int, settings: Settings) -> bool:
    """Trained to the last step and every checkpoint measured (the breadth measure included at the last)."""
    directory = run_dir(out, arm, seed)
    metrics = directory / "metrics.jsonl"
    if not metrics.exists() or not any(r["step"] == settings.steps for r in read_metrics(metrics)):
        return False
    return all(step_measured(directory, step, settings, step == settings.steps) for step in checkpoint_steps(settings))


def run_summary(out: Path, arm: str, seed: int, settings: Settings) -> dict[str, float]:
    """One run's scalars: held-out accuracy at the last step (greedy, mean@k, pass@k, pass@n with n the breadth
    samples, mean@k per kind), the mean@k area under the curve from the start, and the training signals of
    ``smollm2_runs.run_record`` (means over steps 2..last; entropy at the first and last step)."""
    record = run_record(out, arm, seed, settings)
    k = f"mean@{settings.samples}"
    steps = sorted(record["evals"])
    last = record["evals"][settings.steps]
    summary = {"greedy_final": last["all"]["greedy"], "mean_at_k_final": last["all"][k],
               "mean_at_k_auc": area_under_curve(steps, [record["evals"][s]["all"][k] for s in steps]),
               "pass_at_k_final": last["all"][f"pass@{settings.samples}"]}
    summary.update({f"mean_at_k_final_{kind}": row[k] for kind, row in last.items() if kind != "all"})
    breadth = record["breadth"].get(settings.steps)
    if breadth:
        summary["pass_at_n_final"] = breadth["all"][f"pass@{settings.breadth_samples}"]
    summary.update(record["signals"])
    return summary


def columns(settings: Settings, kinds: list[str]) -> tuple:
    """``(header, summary key, digits)`` of the results table; the paired table takes the accuracy columns."""
    n = settings.breadth_samples
    k = settings.samples
    return ((f"greedy (step {settings.steps})", "greedy_final", 3), (f"mean@{k}", "mean_at_k_final", 3),
            (f"mean@{k} AUC", "mean_at_k_auc", 3), (f"pass@{k}", "pass_at_k_final", 3),
            *(((f"pass@{n}", "pass_at_n_final", 3),) if n else ()),
            *((f"{kind} mean@{k}", f"mean_at_k_final_{kind}", 3) for kind in kinds),
            ("entropy first", "entropy_first", 3), ("entropy last", "entropy_last", 3),
            ("clip A>0", "clipfrac_pos", 4), ("clip A<0", "clipfrac_neg", 4),
            ("eps_low eff.", "eps_low", 3), ("eps_high eff.", "eps_high", 3))


def comparison(out: Path, arms: list[str], seeds: list[int]) -> tuple[str, dict, dict]:
    """``(markdown, finished seeds per arm, summaries per arm)`` of the runs in ``out``."""
    settings = Settings.load(out)
    done = {arm: [s for s in seeds if finished(out, arm, s, settings)] for arm in arms}
    summaries = {arm: {s: run_summary(out, arm, s, settings) for s in done[arm]} for arm in arms}
    kinds = sorted({key.removeprefix("mean_at_k_final_") for runs in summaries.values() for r in runs.values()
                    for key in r if key.startswith("mean_at_k_final_")})
    table_columns = columns(settings, kinds)
    lines = [f"Settings: steps {settings.steps}, {settings.prompts_per_step} prompts x {settings.group_size}, "
             f"{settings.updates_per_step} mini-batches per step, {settings.epochs} epoch(s), lr {settings.lr}, "
             f"sampler {settings.rollout_dtype}; held-out: 512 problems, greedy and {settings.samples} samples at "
             f"temperature 1" + (f", {settings.breadth_samples} at the start and the last step" if
                                 settings.breadth_samples else "")
             + f", the model in vLLM in {settings.measure_dtype}.", "",
             "Mean ± sd over seeds (seeds finished per arm in the second column):", "",
             results_table({arm: list(runs.values()) for arm, runs in summaries.items()}, table_columns), ""]
    if REFERENCE in summaries:
        paired_columns = tuple((header, key) for header, key, _ in table_columns)
        lines += [f"Paired by seed (the same prompts in the same order; vLLM's samples on a CPU are seeded but not "
                  f"reproducible): arm - {REFERENCE}, mean ± sd of the per-seed differences, and on how many seeds "
                  "the arm is ahead:", ""]
        header, rows = [], []
        for arm in arms:
            common = [s for s in done[arm] if s in done[REFERENCE]]
            if arm == REFERENCE or not common:
                continue
            table = paired_table({REFERENCE: [summaries[REFERENCE][s] for s in common],
                                  arm: [summaries[arm][s] for s in common]}, common, REFERENCE, paired_columns)
            header, row = table.splitlines()[:2], table.splitlines()[2]
            rows.append(row.replace(f"| {arm} |", f"| {arm} (seeds {','.join(map(str, common))}) |", 1))
        lines += [*header, *rows, ""] if rows else ["(no arm shares a finished seed with grpo yet)", ""]
    missing = [f"{arm} seed {s}" for arm in arms for s in seeds if s not in done[arm]]
    lines.append("Not finished (left out above): " + (", ".join(missing) if missing else "none") + ".")
    return "\n".join(lines), done, summaries


def _band(ax, steps_values: list[dict[int, float]], label: str, color, style: str = "-") -> None:
    """The mean over seeds of ``{step: value}`` curves at the steps they share, with the min-max band."""
    if not steps_values:
        return
    steps = sorted(set.intersection(*(set(c) for c in steps_values)))
    mean = [statistics.fmean(c[s] for c in steps_values) for s in steps]
    line, = ax.plot(steps, mean, style, color=color, label=label, marker="o" if len(steps) < 25 else None,
                    markersize=3)
    ax.fill_between(steps, [min(c[s] for c in steps_values) for s in steps],
                    [max(c[s] for c in steps_values) for s in steps], color=line.get_color(), alpha=0.12)


def plot(out: Path, done: dict[str, list[int]], destination: Path) -> list[Path]:
    """The four PNGs of the module docstring, for the finished runs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = Settings.load(out)
    k = f"mean@{settings.samples}"
    arms = [arm for arm, seeds in done.items() if seeds]
    colors = dict(zip(arms, arm_colors(len(arms))))
    records = {arm: [run_record(out, arm, s, settings) for s in done[arm]] for arm in arms}
    metrics = {arm: [read_metrics(run_dir(out, arm, s) / "metrics.jsonl") for s in done[arm]] for arm in arms}

    def step_curve(rows: list[dict], key: str) -> dict[int, float]:
        return {r["step"]: float(r[key]) for r in rows if key in r}

    figures = {
        "smollm2_mean_at_k.png": (f"held-out {k} at temperature 1 (512 problems; step 0 = the start)",
                                  lambda arm, ax, color: _band(ax, [{s: e["all"][k] for s, e in r["evals"].items()}
                                                                    for r in records[arm]], arm, color)),
        "smollm2_entropy.png": ("policy entropy per token (verl's actor/entropy)",
                                lambda arm, ax, color: _band(ax, [step_curve(rows, STEP_SIGNALS["entropy"])
                                                                  for rows in metrics[arm]], arm, color)),
        "smollm2_clipfrac.png": ("clipped share of tokens: A > 0 solid, A < 0 dashed", lambda arm, ax, color: (
            _band(ax, [step_curve(rows, STEP_SIGNALS["clipfrac_pos"]) for rows in metrics[arm]], arm, color),
            _band(ax, [step_curve(rows, STEP_SIGNALS["clipfrac_neg"]) for rows in metrics[arm]], None,
                  ax.get_lines()[-1].get_color() if ax.get_lines() else color, "--"))),
    }
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, (title, draw) in figures.items():
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        for arm in arms:
            draw(arm, ax, colors[arm])
        written.append(save_figure(fig, ax, title, "training step", destination / filename, fontsize=8))
    breadth = pass_at_j_figure(out, records, colors, settings, destination / "smollm2_pass_at_j.png")
    return written + ([breadth] if breadth else [])


def pass_at_j_figure(out: Path, records: dict[str, list[dict]], colors: dict, settings: Settings,
                     path: Path) -> Path | None:
    """pass@j against j (log scale) at the start and at each arm's last step; None without breadth measures."""
    import matplotlib.pyplot as plt

    start = measure_paths(out, 0)[1]
    if not settings.breadth_samples or not start.exists():
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))

    def curve(table: dict) -> dict[int, float]:
        return {int(key[5:]): value for key, value in table["all"].items() if key.startswith("pass@")}

    _band(ax, [curve(records[next(iter(records))][0]["breadth"][0])], "start (step 0)", "black", "--")
    for arm, runs in records.items():
        _band(ax, [curve(r["breadth"][settings.steps]) for r in runs if settings.steps in r["breadth"]],
              f"{arm} (step {settings.steps})", colors[arm])
    ax.set_xscale("log", base=2)
    return save_figure(fig, ax, "held-out pass@j at temperature 1 (unbiased estimate from the breadth samples)",
                       "j (samples per problem)", path, fontsize=8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="an output folder of smollm2_runs.py")
    parser.add_argument("--arms", default="grpo,dapo,etr,grpo_matched")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-plots", action="store_true", help="the tables only")
    args = parser.parse_args(argv)
    if not (args.out / "settings.json").exists():
        parser.error(f"--out {args.out}: no settings.json there; expected an output folder of "
                     "benchmarks/smollm2_runs.py (or its copy under docs/smollm2/)")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: comma-separated integers, e.g. 0,1,2")
    arms = args.arms.split(",")
    text, done, _ = comparison(args.out, arms, seeds)
    (args.out / "comparison.md").write_text(text + "\n")
    print(text)
    if not args.no_plots and any(done.values()):
        for path in plot(args.out, done, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
