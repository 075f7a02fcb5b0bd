"""The embedded demo (``make demo``): GRPO vs ETR with verl's real trainer, on this machine's CPU.

1. builds the miniature task locally (:mod:`etr_verl.demo.task`): data in verl's parquet schema graded by verl's
   gsm8k reward, a character-level tokenizer, a ~100k-parameter Qwen2 with a short supervised warm start;
2. runs ``python -m etr_verl.main backend=local_cpu algo=<algo>`` for each algorithm — verl's V1 trainer with
   Ray on loopback, an FSDP2 actor, verl's vLLM rollout (vLLM's CPU build), reward, advantages, the loss, the
   weight sync to vLLM and validation;
3. writes ``<out>/<algo>.jsonl`` (verl's file logger), ``<out>/*.png`` plots and ``<out>/summary.md`` (which
   names the rollout engine that served the runs, read from their logs).

    python -m etr_verl.demo                       # defaults below, ~5 minutes on 2 cores
    python -m etr_verl.demo --steps 4 --algos etr  # a quicker look
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from etr_verl.demo.report import write_report
from etr_verl.demo.runner import run_trainer, trainer_overrides
from etr_verl.demo.task import build_task

ALGOS = ("grpo", "dapo", "etr", "etr_micro", "etr_macro")


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
