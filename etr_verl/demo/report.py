"""Read verl's JSONL metrics of the demo runs; write the plots and the summary table."""

from __future__ import annotations

import json
from pathlib import Path

VAL_PREFIX = "val-core/"
PLOTS = {
    "validation_accuracy.png": ("validation accuracy", "val"),
    "policy_entropy.png": ("policy entropy", "actor/entropy"),
    "clip_fraction.png": ("clip fraction", "actor/pg_clipfrac"),
    "effective_clip_bounds.png": ("effective clip range (eps_low * f, eps_high * f)", "bounds"),
}


def read_metrics(path: Path) -> list[dict]:
    """verl's FileLogger lines ``{"step": n, "data": {...}}`` -> one dict per line, with ``step``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            rows.append({"step": record["step"], **record["data"]})
    return rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float(r[key])) for r in rows if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def val_key(rows: list[dict]) -> str | None:
    keys = sorted({k for r in rows for k in r if k.startswith(VAL_PREFIX) and "/acc/" in k})
    return keys[0] if keys else None


def write_report(out: Path, algos: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {algo: read_metrics(out / f"{algo}.jsonl") for algo in algos}
    for filename, (title, key) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for algo, rows in runs.items():
            if key == "val":
                vk = val_key(rows)
                if vk:
                    ax.plot(*series(rows, vk), marker="o", label=algo)
            elif key == "bounds":
                for name, style in (("actor/etr/eps_low_mean", "-"), ("actor/etr/eps_high_mean", "--")):
                    steps, values = series(rows, name)
                    if steps:
                        ax.plot(steps, values, style, label=f"{algo} {name.split('/')[-1]}")
                        lo = series(rows, name.replace("_mean", "_min"))[1]
                        hi = series(rows, name.replace("_mean", "_max"))[1]
                        ax.fill_between(steps, lo, hi, alpha=0.15)
            else:
                ax.plot(*series(rows, key), label=algo)
        if key == "bounds":
            ax.axhline(0.2, color="gray", linestyle=":", label="static eps (grpo) = 0.2")
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110)
        plt.close(fig)
    engines = sorted({rollout_engine((out / f"{algo}.log").read_text(errors="replace"))
                      for algo in algos if (out / f"{algo}.log").exists()})
    summary = f"Rollout engine: {', '.join(engines) or 'unknown (no run log)'}\n\n" + summary_table(runs)
    (out / "summary.md").write_text(summary + "\n")
    return summary


def rollout_engine(log: str) -> str:
    """The engine that served a run's rollouts, read from its log (the Ray actor that generated)."""
    from importlib import metadata

    if "vLLMHttpServer" in log:
        return f"vLLM {metadata.version('vllm')} (verl's vLLM rollout: vLLMHttpServer, weight sync every step)"
    if "HFGenerationServer" in log:
        return "transformers (etr-verl's hf replica, backend=local_cpu_hf)"
    return "unknown (neither vLLM's nor the hf replica's server appears in the log)"


def summary_table(runs: dict[str, list[dict]]) -> str:
    lines = [
        "| algorithm | val acc (first -> last) | mean train reward (first -> last) | entropy (first -> last) "
        "| mean clip fraction | mean elastic factor [min, max] |",
        "|---|---|---|---|---|---|",
    ]
    for algo, rows in runs.items():
        vk = val_key(rows)
        val = series(rows, vk)[1] if vk else []
        reward = series(rows, "critic/score/mean")[1]
        entropy = series(rows, "actor/entropy")[1]
        clip = series(rows, "actor/pg_clipfrac")[1]
        factor = series(rows, "actor/etr/factor_mean")[1]
        fmin, fmax = series(rows, "actor/etr/factor_min")[1], series(rows, "actor/etr/factor_max")[1]

        def span(values):
            return f"{values[0]:.3f} -> {values[-1]:.3f}" if values else "n/a"

        factor_cell = (f"{sum(factor) / len(factor):.3f} [{min(fmin):.2f}, {max(fmax):.2f}]" if factor
                       else "1 (static)")
        clip_cell = f"{sum(clip) / len(clip):.4f}" if clip else "n/a"
        lines.append(f"| {algo} | {span(val)} | {span(reward)} | {span(entropy)} | {clip_cell} | {factor_cell} |")
    return "\n".join(lines)
