"""Arithmetic in SmolLM2-135M-Instruct's learning zone (issue 30, step 2): the prompts, the split, verl's parquet.

Four kinds of problem, one per difficulty, chosen from what the model answers at the start (few-shot prompt below,
temperature 1; ``python benchmarks/smollm2_task.py measure MODEL_DIR --json F`` gives the measured table,
docs/benchmarks.md)::

    difficulty 1  mul_1x1   7 * 8        one-digit factors 2-9           (64 problems)
    difficulty 2  add_2+1   59 + 8       two-digit plus one-digit         (720)
    difficulty 3  add_2+2   59 + 63      two-digit plus two-digit       (8,100)
    difficulty 4  mul_2x1   82 * 5       two-digit times one-digit 2-9    (720)

Every problem of a kind is enumerated and split once, by a fixed seed, into a held-out evaluation set (``EVAL_COUNTS``
per kind: 512 in all) and the training problems (the rest): no problem is in both, whatever the training draw.

The prompt goes through the model's chat template (verl's ``RLHFDataset`` applies it to the row's ``prompt``
messages): two solved examples as earlier chat turns, then the question. The grade is verl's own ``openai/gsm8k``
reward (strict: the number after ``#### ``, 0/1), which the examples show::

    user: What is 12 + 7?        assistant: 12 + 7 = 19\\n#### 19
    user: What is 45 - 18?       assistant: 45 - 18 = 27\\n#### 27
    user: What is 59 + 63?       assistant: (the response graded)

Without the examples the model rarely writes ``####`` (0 of 64 sampled answers to 2-digit sums, with a system
message asking for it): the format would be the first thing learnt, not arithmetic. The examples' own problems
(12 + 7; a subtraction) are excluded from both sets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

DATA_SOURCE = "openai/gsm8k"  # routes verl's default_compute_score to its strict gsm8k grader
KINDS = ("mul_1x1", "add_2+1", "add_2+2", "mul_2x1")
DIFFICULTY = {kind: level for level, kind in enumerate(KINDS, start=1)}
EVAL_COUNTS = {"mul_1x1": 32, "add_2+1": 144, "add_2+2": 192, "mul_2x1": 144}
SPLIT_SEED = 30
EXAMPLES = (("12 + 7", "12 + 7 = 19\n#### 19"), ("45 - 18", "45 - 18 = 27\n#### 27"))
MEASURE_DTYPES = ("float32", "bfloat16")
MAX_PROMPT_TOKENS = 128  # the few-shot chat prompt through SmolLM2's template: ~110 tokens (verl: prompt_length 109)
MAX_RESPONSE_TOKENS = 32  # "59 + 63 = 122\n#### 122" is 14 tokens; room for a wrong, longer answer to be graded

Problem = tuple[str, int, int]  # (kind, a, b)


def all_problems(kind: str) -> list[Problem]:
    """Every problem of ``kind``, in a fixed order, less the examples' own."""
    if kind == "mul_1x1":
        pairs = [(a, b) for a in range(2, 10) for b in range(2, 10)]
    elif kind == "add_2+1":
        pairs = [(a, b) for a in range(10, 100) for b in range(2, 10)]
    elif kind == "add_2+2":
        pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    elif kind == "mul_2x1":
        pairs = [(a, b) for a in range(10, 100) for b in range(2, 10)]
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    shown = {question for question, _ in EXAMPLES}
    return [(kind, a, b) for a, b in pairs if question_of((kind, a, b)) not in shown]


def question_of(problem: Problem) -> str:
    kind, a, b = problem
    return f"{a} {'*' if kind.startswith('mul') else '+'} {b}"


def answer_of(problem: Problem) -> int:
    kind, a, b = problem
    return a * b if kind.startswith("mul") else a + b


def split() -> tuple[list[Problem], list[Problem]]:
    """``(training problems, evaluation problems)``: each kind shuffled by ``SPLIT_SEED``, its first
    ``EVAL_COUNTS[kind]`` held out. Disjoint by construction."""
    train, held_out = [], []
    for kind in KINDS:
        problems = all_problems(kind)
        random.Random(f"{SPLIT_SEED}-{kind}").shuffle(problems)
        held_out += problems[:EVAL_COUNTS[kind]]
        train += problems[EVAL_COUNTS[kind]:]
    return train, held_out


def training_draw(n: int, seed: int) -> list[Problem]:
    """``n`` training problems, each kind equally often (a kind with fewer problems than its share repeats them)."""
    train, _ = split()
    by_kind = {kind: [p for p in train if p[0] == kind] for kind in KINDS}
    rng = random.Random(seed)
    draw = [rng.choice(by_kind[KINDS[i % len(KINDS)]]) for i in range(n)]
    rng.shuffle(draw)
    return draw


def messages(problem: Problem) -> list[dict[str, str]]:
    """The chat messages of a prompt: the two examples as earlier turns, then the question."""
    turns = []
    for question, answer in EXAMPLES:
        turns += [{"role": "user", "content": f"What is {question}?"}, {"role": "assistant", "content": answer}]
    return turns + [{"role": "user", "content": f"What is {question_of(problem)}?"}]


def write_parquet(path: Path, split_name: str, problems: list[Problem]) -> None:
    """verl's RL parquet: chat ``prompt``, the answer as ``reward_model.ground_truth``, the kind in ``extra_info``."""
    import pandas as pd

    rows = [{
        "data_source": DATA_SOURCE,
        "prompt": messages(problem),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(answer_of(problem))},
        "extra_info": {"split": split_name, "index": i, "kind": problem[0], "difficulty": DIFFICULTY[problem[0]]},
    } for i, problem in enumerate(problems)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def write_task(out_dir: Path, n_train: int = 4096, seed: int = 0) -> dict[str, str]:
    """``train.parquet`` (``n_train`` drawn training problems) and ``eval.parquet`` (the 512 held out)."""
    _, held_out = split()
    paths = {"train": out_dir / "train.parquet", "eval": out_dir / "eval.parquet"}
    write_parquet(paths["train"], "train", training_draw(n_train, seed))
    write_parquet(paths["eval"], "test", held_out)
    return {name: str(path) for name, path in paths.items()}


def grade(response: str, problem: Problem) -> float:
    """verl's own grade of a response (its ``default_compute_score`` for ``openai/gsm8k``)."""
    from verl.utils.reward_score import default_compute_score

    return float(default_compute_score(DATA_SOURCE, response, str(answer_of(problem))))


def pass_at(n: int, correct: int, j: int) -> float:
    """Unbiased pass@j from ``correct`` of ``n`` samples (Chen et al. 2021): ``1 - C(n - c, j) / C(n, j)``."""
    if n - correct < j:
        return 1.0
    return 1.0 - math.comb(n - correct, j) / math.comb(n, j)


def summarise(problems: list[Problem], greedy: list[float], samples: list[list[float]]) -> dict[str, dict]:
    """Greedy accuracy, mean@k and unbiased pass@j (j = 1, 2, 4, ..., k) per kind and over all, with the
    standard error of greedy accuracy and mean@k over problems (``sqrt(var / n)``)."""
    groups = {kind: [i for i, p in enumerate(problems) if p[0] == kind] for kind in KINDS}
    groups["all"] = list(range(len(problems)))
    k = len(samples[0]) if samples else 0
    table = {}
    for name, rows in groups.items():
        if not rows:
            continue
        per_problem = [sum(samples[i]) / k for i in rows]
        row = {"problems": len(rows), "greedy": _mean([greedy[i] for i in rows]),
               "greedy_se": _standard_error([greedy[i] for i in rows]),
               f"mean@{k}": _mean(per_problem), f"mean@{k}_se": _standard_error(per_problem)}
        j = 1
        while j <= k:
            row[f"pass@{j}"] = _mean([pass_at(k, int(sum(samples[i])), j) for i in rows])
            j *= 2
        table[name] = row
    return table


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _standard_error(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def bf16_slow_here(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Why bf16 would be slow on this CPU, or None: without AMX or AVX-512 BF16 units torch and vLLM emulate bf16
    matmuls, many times slower than fp32 (38x for a small matmul on an AVX2 machine, docs/benchmarks.md section
    1). None where the CPU's flags cannot be read."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return None
    if flags & {"amx_bf16", "avx512_bf16"}:
        return None
    return f"this CPU has neither amx_bf16 nor avx512_bf16 ({cpuinfo}): bf16 runs emulated, slower than fp32"


def measure(model_dir: str, problems: list[Problem], samples: int = 8, seed: int = 0,
            max_tokens: int = MAX_RESPONSE_TOKENS, dtype: str = "float32") -> dict[str, dict]:
    """The model's accuracy on ``problems`` with verl's grader: greedy, and ``samples`` answers per problem at
    temperature 1, by vLLM on the CPU (the engine verl's rollout uses; settings as the local backend's) with the
    weights in ``dtype``."""
    return summarise(problems, *answers(model_dir, problems, samples, seed, max_tokens, dtype))


def answers(model_dir: str, problems: list[Problem], samples: int = 8, seed: int = 0,
            max_tokens: int = MAX_RESPONSE_TOKENS, dtype: str = "float32") -> tuple[list[float], list[list[float]]]:
    """The grades behind :func:`measure`: ``(greedy[i], sampled[i][s])``, one vLLM engine for both."""
    for name, value in VLLM_CPU_ENV.items():
        os.environ.setdefault(name, value)
    from vllm import LLM, SamplingParams

    from etr_verl.local_cpu import ipc_sockets

    # vLLM's ZeroMQ socket files in a directory of this measure's own, removed after it: vLLM's engine processes are
    # killed at exit and leave them in /tmp otherwise (seven per measure here), as the trainer's would
    with ipc_sockets.private_to_the_run():
        # every prompt starts with the same few-shot turns: with prefix caching they are computed once, not 512 times
        llm = LLM(model=model_dir, dtype=dtype, enforce_eager=True, seed=seed, max_model_len=512,
                  enable_prefix_caching=True)
        prompts = [messages(p) for p in problems]
        greedy_out = llm.chat(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=False)
        # the engine's seed only: a per-request seed fails on the CPU ("CPU Generator does not use offset", vllm-cpu
        # 0.27.1), so samples are seeded but not reproducible between runs, as in verl's rollout on the CPU
        sampled_out = llm.chat(prompts, SamplingParams(n=samples, temperature=1.0, max_tokens=max_tokens),
                               use_tqdm=False)
    greedy = [grade(out.outputs[0].text, p) for out, p in zip(greedy_out, problems)]
    sampled = [[grade(o.text, p) for o in out.outputs] for out, p in zip(sampled_out, problems)]
    return greedy, sampled


VLLM_CPU_ENV = {
    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",  # no usage report (it would try the network)
    "VLLM_HOST_IP": "127.0.0.1", "VLLM_LOOPBACK_IP": "127.0.0.1",  # every socket on loopback
    "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB; vLLM-CPU's default takes a share of the machine's memory
    # etr_verl's vLLM plugin (etr_verl/local_cpu/vllm_plugin.py), as in the trainer's rollout: torch's rendezvous
    # store bound to loopback (it listens on every interface otherwise), linear layers as the rollout runs them
    "VERL_PLATFORM": "cpu",
    # every CPU this process may use: vLLM-CPU's "auto" binding keeps one CPU for the engine's scheduler process,
    # which on a 2-CPU machine leaves the model a single thread (measured here: 64 problems, greedy and 8 samples,
    # in 198 s with "auto", 110 s with both CPUs)
    "VLLM_CPU_OMP_THREADS_BIND": ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0))),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="write OUT/train.parquet and OUT/eval.parquet")
    data.add_argument("--out", type=Path, required=True)
    data.add_argument("--n-train", type=int, default=4096)
    data.add_argument("--seed", type=int, default=0)
    measure_cli = commands.add_parser("measure", help="a model's accuracy on the evaluation set (greedy, and mean@k "
                                      "and pass@j at temperature 1), a row per kind; written as JSON")
    measure_cli.add_argument("model", help="a Hugging Face model directory (e.g. a checkpoint's actor/huggingface)")
    measure_cli.add_argument("--json", type=Path, required=True, help="where the table goes")
    measure_cli.add_argument("--samples", type=int, default=8, help="answers per problem for mean@k (default 8)")
    measure_cli.add_argument("--seed", type=int, default=0)
    measure_cli.add_argument("--dtype", choices=MEASURE_DTYPES, default="float32",
                             help="vLLM's dtype for the measured model (bfloat16: about 2x faster on a CPU with "
                             "AMX; default float32, as the training runs the actor)")
    measure_cli.add_argument("--also-samples", type=int, default=None, metavar="K",
                             help="also the table of each problem's first K samples (K < --samples), as a "
                             "K-sample measure would give it, from the same answers; needs --also-json")
    measure_cli.add_argument("--also-json", type=Path, default=None, help="where that second table goes")
    measure_cli.add_argument("--limit", type=int, default=None,
                             help="only the first N held-out problems, in the set's order (kind by kind): a quick "
                             "look at the speed, not the task's table")
    args = parser.parse_args(argv)
    if args.command == "measure" and args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: a number of problems, 1 or more (or leave it out for all 512)")
    if args.command == "measure" and (args.also_samples is None) != (args.also_json is None):
        parser.error("--also-samples and --also-json go together")
    if args.command == "measure" and args.also_samples is not None and not 1 <= args.also_samples < args.samples:
        parser.error(f"--also-samples {args.also_samples}: between 1 and --samples - 1 ({args.samples - 1})")
    if args.command == "data":
        print(json.dumps(write_task(args.out, args.n_train, args.seed), indent=1))
        return
    _, held_out = split()
    problems = held_out[:args.limit]
    # a measure ended by SIGTERM (kill, a stopped sweep) unwinds like Ctrl-C, so that its socket directory goes too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    slow = bf16_slow_here() if args.dtype == "bfloat16" else None
    if slow:
        print(f"warning: --dtype bfloat16: {slow}", file=sys.stderr, flush=True)
    started = time.monotonic()
    greedy, sampled = answers(args.model, problems, args.samples, args.seed, dtype=args.dtype)
    print(f"measured in {time.monotonic() - started:.0f} s")
    tables = [(args.json, summarise(problems, greedy, sampled))]
    if args.also_samples is not None:  # vLLM's n samples of a prompt are independent draws: any K of them are K
        tables.append((args.also_json, summarise(problems, greedy, [s[:args.also_samples] for s in sampled])))
    for path, table in tables:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1))
        print(format_table(table))


def format_table(table: dict[str, dict]) -> str:
    """A Markdown table of :func:`summarise`'s result, a row per kind."""
    columns = [c for c in next(iter(table.values())) if c != "problems"]
    lines = ["| kind | problems | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['problems']} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
