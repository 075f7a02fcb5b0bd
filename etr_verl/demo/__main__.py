"""The embedded demo (``make demo``): GRPO vs ETR with verl's real trainer, on this machine's CPU.

1. builds the miniature task locally (:mod:`etr_verl.demo.task`): data in verl's parquet schema graded by verl's
   gsm8k reward, a character-level tokenizer, a ~100k-parameter Qwen2 with a short supervised warm start;
2. runs ``python -m etr_verl.main backend=local_cpu algo=<algo>`` for each algorithm, side by side (each its own
   local Ray; about 15 GB of memory at the peak together, measured on a 24 GB machine; ``--one-at-a-time`` for
   less) — verl's V1 trainer with
   Ray on loopback, an FSDP2 actor, verl's vLLM rollout (vLLM's CPU build), reward, advantages, the loss, the
   weight sync to vLLM and validation;
3. writes ``<out>/<algo>.jsonl`` (verl's file logger), ``<out>/*.png`` plots and ``<out>/summary.md`` (which
   names the rollout engine that served the runs, read from their logs).

    python -m etr_verl.demo                       # defaults below, the runs side by side: ~3.5 minutes on 2 cores
    python -m etr_verl.demo --steps 4 --algos etr  # a quicker look
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from etr_verl.demo.report import write_report
from etr_verl.demo.runner import run_trainer, trainer_overrides
from etr_verl.demo.task import build_task

ALGOS = ("grpo", "dapo", "etr", "etr_micro", "etr_macro")


def prefixed(algo: str):
    """An ``echo`` for :func:`run_trainer` that marks each progress line with its algorithm."""
    return lambda line: print(f"[{algo}] {line.strip()}", flush=True)


def threads_per_run(side_by_side: int) -> dict[str, str]:
    """``OMP_NUM_THREADS`` for each run: the caller's, else this machine's CPUs shared among the runs that go side by
    side (the local backend gives a run every CPU otherwise, and two runs would each compute on all of them)."""
    cpus = len(os.sched_getaffinity(0))
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, cpus // side_by_side))}


def run_concurrently(runs: dict[str, tuple], runner=run_trainer) -> None:
    """Each algorithm's run at once, in a thread that follows its subprocess: most of a run's ~80 s start-up (Ray,
    the workers' imports, vLLM's engine) waits on one process at a time, so two runs side by side take far less
    than twice one on 2 cores. The first failure is raised once every run has ended."""
    import threading

    failures: dict[str, BaseException] = {}

    def follow(algo: str, run: tuple) -> None:
        try:
            runner(*run, echo=prefixed(algo))
        except BaseException as error:  # noqa: BLE001  (re-raised in the main thread below)
            failures[algo] = error

    threads = [threading.Thread(target=follow, args=item, name=f"demo-{item[0]}") for item in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        algo, error = next(iter(failures.items()))
        raise RuntimeError(f"the {algo} run failed") from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--algos", default="grpo,etr", help=f"comma-separated, from {ALGOS}")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="run the algorithms one after the other (default: side by side, each run its own local "
                             "Ray; about 15 GB of memory at the peak for two)")
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
    threads = threads_per_run(1 if args.one_at_a_time else len(algos))
    runs = {algo: (trainer_overrides(task, algo, args.steps, args.seed, out), out / f"{algo}.jsonl",
                   out / f"{algo}.log", threads) for algo in algos}
    for algo, (_, _, log, _) in runs.items():
        print(f"[demo] {algo}: verl trainer, {args.steps} steps (log: {log})")
    if args.one_at_a_time:
        for algo, run in runs.items():
            run_trainer(*run, echo=prefixed(algo))
    else:
        run_concurrently(runs)
    summary = write_report(out, algos)
    print(summary)
    print(f"[demo] done in {time.time() - start:.0f} s: {out}/summary.md and {out}/*.png")


if __name__ == "__main__":
    main()
