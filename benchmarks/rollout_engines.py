"""Step time of the local CPU backend's two rollout engines: verl's vLLM rollout (``backend=local_cpu``) against
etr-verl's transformers replica (``backend=local_cpu_hf``), on the demo's task and config.

    python benchmarks/rollout_engines.py --steps 8 --repeats 2   # prints a table and the vLLM / hf ratio

Each engine runs the demo's ETR config (8 prompts x 8 samples a step, 4 updates, no validation) for ``--steps``
steps, ``--repeats`` times, alternating engines. The steady step time is the median of verl's ``timing_s/step`` over
steps 2..N (step 1 includes warm-up) over all repeats; the start-up time is the run's wall clock minus its steps.
Target (issue 27): steady step of vLLM <= 1.05x hf's. Every run has the same seed, so the first step's mean score of
the repeats shows which engine reproduces its rollouts (the learning benchmark's paired seeds need it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etr_verl.demo.report import read_metrics  # noqa: E402
from etr_verl.demo.runner import run_trainer, trainer_overrides  # noqa: E402
from etr_verl.demo.task import build_task  # noqa: E402

ENGINES = {"vLLM": "local_cpu", "hf": "local_cpu_hf"}


def one_run(task: dict, backend: str, steps: int, out: Path) -> tuple[list[float], float, float]:
    overrides = trainer_overrides(task, "etr", steps, seed=0, out_dir=out, test_freq=-1, val_before_train=False,
                                  backend=backend)
    start = time.monotonic()
    run_trainer(overrides, out / "metrics.jsonl", out / "run.log", echo=lambda _line: None)
    wall = time.monotonic() - start
    rows = read_metrics(out / "metrics.jsonl")
    return [row["timing_s/step"] for row in rows], wall, rows[0]["critic/score/mean"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="etr-engines-") as tmp:
        root = Path(tmp)
        task = build_task(root / "task", seed=0, log=lambda _m: None)
        steady = {name: [] for name in ENGINES}
        startup = {name: [] for name in ENGINES}
        first_scores = {name: [] for name in ENGINES}
        for repeat in range(args.repeats):
            for name, backend in ENGINES.items():
                out = root / f"{name}-{repeat}"
                out.mkdir()
                times, wall, score = one_run(task, backend, args.steps, out)
                steady[name] += times[1:]
                startup[name].append(wall - sum(times))
                first_scores[name].append(score)
                print(f"[engines] {name} run {repeat + 1}: steps {[round(t, 2) for t in times]}, wall {wall:.0f} s, "
                      f"step-1 mean score {score:.4f}", flush=True)
    print("\n| engine | steady step (median, s) | steps measured | start-up (mean, s) | step-1 mean score, each run "
          "(same seed) |")
    print("|---|---|---|---|---|")
    for name in ENGINES:
        print(f"| {name} | {statistics.median(steady[name]):.2f} | {len(steady[name])} "
              f"| {statistics.mean(startup[name]):.0f} | {' / '.join(f'{s:.4f}' for s in first_scores[name])} |")
    ratio = statistics.median(steady["vLLM"]) / statistics.median(steady["hf"])
    print(f"\nsteady step, vLLM / hf: {ratio:.2f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
