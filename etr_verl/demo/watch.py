"""``python -m etr_verl.demo.watch METRICS.jsonl [--out PNG]``: the metrics to watch in an ETR run, on one page.

Reads verl's file-logger output (``trainer.logger=[...,file]``; ``VERL_FILE_LOGGER_PATH``) of any run — the demo's,
a cluster run's — and draws the six panels of ``docs/watching.md``: ETR's factor, the effective clip bounds against
the static range, the clip fractions by advantage sign, whether the exact macro signal reached the loss, the macro
signal itself (verl's ``critic/returns``) with the share of zero-variance groups, and the policy entropy. Prints
one line per check of a healthy run (the same checks the doc lists).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from etr_verl.demo.report import read_metrics, series

ETR = "actor/etr/"


def health(rows: list[dict]) -> list[tuple[bool, str]]:
    """The checks of a healthy ETR run, each ``(ok, line)``, over the steps that logged ETR's metrics."""
    steps = [r for r in rows if ETR + "factor_mean" in r]
    if not steps:
        return [(False, "no actor/etr/* metrics: the run's loss is not ETR (policy_loss.loss_mode=etr)")]
    driver = [r[ETR + "macro_from_driver"] for r in steps]
    clipped = [r.get("actor/pg_clipfrac", 0.0) for r in steps]
    moved = [r for r in steps if r[ETR + "factor_min"] < 1 - 1e-6 or r[ETR + "factor_max"] > 1 + 1e-6]
    return [
        (min(driver) == 1.0, f"actor/etr/macro_from_driver = 1 at every step (min {min(driver):g}): the exact "
                             "group variances reached the loss"),
        (max(clipped) > 0, f"actor/pg_clipfrac > 0 at some step (max {max(clipped):.4f}): clip bounds bind, so "
                           "ETR can act (several mini-batches per step or ppo_epochs > 1)"),
        (len(moved) > 0, f"factors differ from 1 at {len(moved)} of {len(steps)} steps: the bounds are elastic"),
    ]


def plot(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    ax = axes[0][0]
    steps, mean = series(rows, ETR + "factor_mean")
    ax.plot(steps, mean, label="mean")
    ax.fill_between(steps, series(rows, ETR + "factor_min")[1], series(rows, ETR + "factor_max")[1], alpha=0.2,
                    label="min..max")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_title("ETR factor f (1 = GRPO's range)")
    ax = axes[0][1]
    for name, style in (("eps_low", "-"), ("eps_high", "--")):
        steps, values = series(rows, f"{ETR}{name}_mean")
        ax.plot(steps, values, style, label=f"{name} (mean)")
        ax.fill_between(steps, series(rows, f"{ETR}{name}_min")[1], series(rows, f"{ETR}{name}_max")[1], alpha=0.15)
    ax.set_title("effective clip bounds (static: eps_low, eps_high)")
    ax = axes[0][2]
    for key, label in (("actor/pg_clipfrac", "all tokens"), (ETR + "pg_clipfrac_adv_pos", "A > 0"),
                       (ETR + "pg_clipfrac_adv_neg", "A < 0")):
        ax.plot(*series(rows, key), label=label)
    ax.set_title("clip fraction, by advantage sign")
    ax = axes[1][0]
    ax.plot(*series(rows, ETR + "macro_from_driver"), marker="o")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("macro_from_driver (must be 1)")
    ax = axes[1][1]
    ax.plot(*series(rows, "critic/returns/mean"), label="critic/returns/mean = v_g / v_max")
    ax.plot(*series(rows, ETR + "zero_variance_share"), label="zero-variance share")
    ax.set_title("the macro signal")
    ax = axes[1][2]
    ax.plot(*series(rows, "actor/entropy"))
    ax.set_title("policy entropy")
    for ax in axes.flat:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path, help="verl's file-logger JSONL of the run")
    parser.add_argument("--out", type=Path, help="the page (PNG); default: beside the metrics, <name>.watch.png")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    rows = read_metrics(args.metrics)
    out = args.out or args.metrics.with_suffix(".watch.png")
    plot(rows, out, args.title or str(args.metrics))
    checks = health(rows)
    for ok, line in checks:
        print(("ok    " if ok else "CHECK ") + line)
    print(f"page: {out}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
