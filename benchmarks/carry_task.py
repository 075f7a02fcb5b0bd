"""The learning benchmark's miniature: multi-digit sums with a worked scratchpad, built locally.

Why this task (issue 13; docs/benchmarks.md section 1): the demo's single-digit sums answer in three tokens, so
entropy barely moves and every prompt has the same difficulty. Here a response works a sum column by column,
least significant digit first, carrying by hand, then states the answer::

    prompt  : 47+85=
    response: 7+5=12 4+8+1=13 #### 132

so responses are 6-36 tokens long (entropy over a real chain), and difficulty is mixed: operands of 1 to 3 digits,
with and without carries, so that groups spread across pass rates (the macro level only matters then). The grade
is verl's own ``openai/gsm8k`` reward (strict ``#### <answer>`` format, 0/1), as for the demo.

The policy is a small Qwen2 (character-level tokenizer of :mod:`etr_verl.demo.task`) given a supervised warm
start on *noisy* worked solutions: each column's sum is written wrong (off by one) with probability ``noise``, and
the rest of the solution stays consistent with what was written (the carry follows the written sum, the answer is
the written digits). The warm start is short, so the model starts with headroom: roughly 20-40 % greedy accuracy,
high on one-digit sums and low on three-digit sums with carries (:func:`greedy_accuracy` measures it,
:func:`accuracy_by_digits` per difficulty).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import torch

MAX_DIGITS = 3
MAX_RESPONSE_TOKENS = 40  # the longest worked solution (three columns with carries, four-digit answer) is 36


def problems(seed: int, n: int) -> list[tuple[int, int]]:
    """``n`` pairs ``(a, b)``; each operand has 1 to 3 digits, uniformly, independently (mixed difficulty)."""
    rng = random.Random(seed)

    def operand() -> int:
        digits = rng.randint(1, MAX_DIGITS)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    return [(operand(), operand()) for _ in range(n)]


def worked_solution(a: int, b: int, noise: float = 0.0, rng: random.Random | None = None) -> str:
    """The scratchpad for ``a + b``: one ``x+y[+carry]=s`` step per column (least significant first), ``#### answer``.

    With ``noise > 0`` each column's written sum is off by one with that probability; the carry and the answer
    then follow the written sums, so the solution is wrong only in its arithmetic, never in its form."""
    rng = rng or random.Random(0)
    xs, ys = str(a)[::-1], str(b)[::-1]
    columns = max(len(xs), len(ys))
    carry, steps, digits = 0, [], []
    for i in range(columns):
        x = int(xs[i]) if i < len(xs) else 0
        y = int(ys[i]) if i < len(ys) else 0
        total = x + y + carry
        if noise and rng.random() < noise:
            total = max(0, total + rng.choice((-1, 1)))
        steps.append(f"{x}+{y}{f'+{carry}' if carry else ''}={total}")
        digits.append(str(total % 10))
        carry = total // 10
    answer = (str(carry) if carry else "") + "".join(reversed(digits))
    return " ".join(steps) + f" #### {int(answer)}"


def difficulty(a: int, b: int) -> int:
    """The number of columns of the sum (1-3): the benchmark's difficulty label."""
    return max(len(str(a)), len(str(b)))


def demonstration_pairs(rng: random.Random, n: int, hard_share: float | None) -> list[tuple[int, int]]:
    """``n`` problems for the warm start. ``hard_share=None``: the task's own mix (:func:`problems`); a number:
    that share of 3-column sums, the rest 1-2 column sums (each drawn from the task's mix by rejection), so
    that the warm start can leave the hard sums rarely solved without leaving them never solved."""
    if hard_share is None:
        return problems(rng.randint(0, 10**9), n)
    pool = iter(())
    pairs = []
    while len(pairs) < n:
        want_hard = rng.random() < hard_share
        for a, b in pool:
            if (difficulty(a, b) == MAX_DIGITS) == want_hard:
                pairs.append((a, b))
                break
        else:
            pool = iter(problems(rng.randint(0, 10**9), 4 * n))
    return pairs


def warm_start(model, tokenizer, seed: int, steps: int, noise: float, batch: int = 64, lr: float = 3e-3,
               hard_share: float | None = None, log=print) -> None:
    """Supervised pass on noisy worked solutions (the answer tokens only are trained, not the prompt);
    ``hard_share``: :func:`demonstration_pairs`."""
    from etr_verl.demo.task import supervised_pass

    rng = random.Random(seed)
    torch.manual_seed(seed)

    def noisy_batch():
        prompts, texts = [], []
        for a, b in demonstration_pairs(rng, batch, hard_share):
            user = [{"role": "user", "content": f"{a}+{b}="}]
            prompts.append(tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True))
            texts.append(tokenizer.apply_chat_template(
                user + [{"role": "assistant", "content": worked_solution(a, b, noise, rng)}], tokenize=False))
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        for row, prompt in enumerate(prompts):  # no loss on the prompt: the model learns to answer, not to ask
            labels[row, : len(tokenizer(prompt, add_special_tokens=False)["input_ids"])] = -100
        return encoded, labels

    supervised_pass(model, noisy_batch, steps, lr=lr, log_every=100, log=log)


@torch.no_grad()
def generate(model, tokenizer, pairs: list[tuple[int, int]], greedy: bool = True, samples: int = 1,
             temperature: float = 1.0, seed: int = 0) -> list[list[str]]:
    """Responses (``samples`` per prompt) decoded as text, as the rollout produces them (chat template)."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"{a}+{b}="}], tokenize=False,
                                             add_generation_prompt=True) for a, b in pairs]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**encoded, max_new_tokens=MAX_RESPONSE_TOKENS, do_sample=not greedy,
                         temperature=None if greedy else temperature, top_k=None if greedy else 0, top_p=None,
                         num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * samples:(i + 1) * samples] for i in range(len(pairs))]


def score(response: str, a: int, b: int) -> float:
    """verl's own grade of a response (``openai/gsm8k``, strict)."""
    from verl.utils.reward_score.gsm8k import compute_score

    return float(compute_score(response, str(a + b)))


def accuracy_by_digits(model, tokenizer, pairs: list[tuple[int, int]]) -> dict[str, float]:
    """Greedy accuracy overall and per difficulty (``"1"``, ``"2"``, ``"3"`` columns)."""
    responses = generate(model, tokenizer, pairs)
    grades = [score(r[0], a, b) for r, (a, b) in zip(responses, pairs)]
    result = {"all": sum(grades) / len(grades)}
    for d in range(1, MAX_DIGITS + 1):
        picked = [g for g, (a, b) in zip(grades, pairs) if difficulty(a, b) == d]
        if picked:
            result[str(d)] = sum(picked) / len(picked)
    return result


def greedy_accuracy(model_dir: str | Path, val_parquet: str | Path) -> dict[str, float]:
    """Greedy accuracy of a saved Hugging Face model on a validation parquet written by :func:`write_parquet`."""
    import pandas as pd

    frame = pd.read_parquet(val_parquet)
    pairs = [tuple(int(x) for x in row["prompt"][0]["content"].rstrip("=").split("+")) for _, row in frame.iterrows()]
    return accuracy_by_digits(*load_saved(model_dir), pairs)


def load_saved(model_dir: str | Path):
    """A saved Hugging Face model (in fp32, for evaluation) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(model_dir))


EVAL_SEED = 3
"""The evaluation set's seed: :func:`build_task` (seed 0) draws training problems from seed 1 and verl's
validation problems from seed 2. These are fresh draws from the same mix, not a disjoint set: of the committed
task's training and validation problems, 93 % of one-column sums recur among them (there are only 100), 18 % of
two-column and 1 % of three-column sums (the warm start's demonstrations cover still more)."""


def eval_set_accuracy(model_dir: str | Path, greedy_problems: int = 1024, sampled_problems: int = 512,
                     samples: int = 8, large_k: int = 0) -> dict[str, float]:
    """A saved model's accuracy on a fixed evaluation set, larger than verl's validation set (its 64 prompts give
    greedy accuracy a standard error of about 0.06; 1024 give about 0.015).

    Greedy accuracy on ``greedy_problems`` problems (``"all"``, and ``"1"``-``"3"`` per number of columns), and
    ``mean@k`` / ``pass@k`` at temperature 1 (``k = samples``, overall and on 3-column sums) on the first
    ``sampled_problems`` of them, with a fixed sampling seed: the same weights give the same numbers. With
    ``large_k``, also :func:`large_k_accuracy` on the 3-column sums of those ``sampled_problems``."""
    pairs = problems(EVAL_SEED, greedy_problems)
    model, tokenizer = load_saved(model_dir)
    result = accuracy_by_digits(model, tokenizer, pairs)
    if sampled_problems:
        result.update(sampled_accuracy(model, tokenizer, pairs[:sampled_problems], samples=samples))
    if large_k:
        hard = [pair for pair in pairs[:sampled_problems] if difficulty(*pair) == MAX_DIGITS]
        result.update(large_k_accuracy(model, tokenizer, hard, large_k))
    return result


def pass_at(n: int, correct: int, j: int) -> float:
    """The unbiased estimate of pass@j from ``n >= j`` samples of which ``correct`` pass (Chen et al. 2021,
    "Evaluating Large Language Models Trained on Code", eq. 1): the chance that ``j`` samples drawn without
    replacement from the ``n`` include a passing one, ``1 - C(n - correct, j) / C(n, j)``."""
    if not 1 <= j <= n or not 0 <= correct <= n:
        raise ValueError(f"pass@{j} from {correct} correct of {n} samples: need 1 <= j <= n and 0 <= correct <= n")
    return 1.0 - math.comb(n - correct, j) / math.comb(n, j)


def large_k_points(n: int) -> list[int]:
    """The ``j`` of :func:`large_k_accuracy`: powers of two up to ``n``, and ``n``."""
    return sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})


def large_k_key(j: int, n: int) -> str:
    """The evaluation JSON's key of pass@j estimated from ``n`` samples per problem."""
    return f"3-column pass@{j} of {n}"


def parse_large_k_key(key: str) -> tuple[int, int] | None:
    """``(j, n)`` of a :func:`large_k_key`; ``None`` for any other key."""
    match = re.fullmatch(r"3-column pass@(\d+) of (\d+)", key)
    return (int(match[1]), int(match[2])) if match else None


LARGE_K_CHUNK = 64  # problems per generate call of large_k_accuracy


def large_k_accuracy(model, tokenizer, pairs: list[tuple[int, int]], samples: int) -> dict[str, float]:
    """Breadth where it can narrow: ``samples`` responses per problem at temperature 1 (a fixed seed, another than
    :func:`sampled_accuracy`'s), and from the same responses the unbiased pass@j (:func:`pass_at`) for every ``j``
    of :func:`large_k_points`, averaged over ``pairs`` (the evaluation set's 3-column sums). At ``j = 8`` an improving
    policy's pass@j rises with its accuracy; a policy that narrows its sampling (the claim ETR is about) loses
    pass@j at large ``j`` first. Keys: :func:`large_k_key`."""
    if samples < 2:
        raise ValueError(f"large_k={samples}: pass@j at large j needs at least 2 samples per problem (e.g. 64)")
    if not pairs:
        raise ValueError("large_k: no 3-column sums to sample; measure more problems (sampled_problems)")
    correct = []
    for start in range(0, len(pairs), LARGE_K_CHUNK):  # bounded memory: the KV cache of a chunk's samples only
        chunk = pairs[start:start + LARGE_K_CHUNK]
        responses = generate(model, tokenizer, chunk, greedy=False, samples=samples, seed=1 + start)
        correct += [sum(int(score(r, a, b)) for r in rs) for rs, (a, b) in zip(responses, chunk)]
    return {large_k_key(j, samples): sum(pass_at(samples, c, j) for c in correct) / len(correct)
            for j in large_k_points(samples)}


def write_parquet(path: Path, split: str, seed: int, n: int) -> None:
    from etr_verl.demo.task import write_sums

    write_sums(path, split, problems(seed, n), extra_info=lambda a, b: {"columns": difficulty(a, b)})


def build_task(out_dir: Path, seed: int = 0, warm_steps: int = 300, noise: float = 0.15, hidden: int = 64,
               layers: int = 2, n_train: int = 2048, n_val: int = 64, hard_share: float | None = None,
               log=print) -> dict[str, str]:
    """Build (or reuse) tokenizer + warm-started model + train/val parquet under ``out_dir``; returns the paths
    (``model``, ``train``, ``val``) and, in ``task.json``, the spec and the warm start's greedy accuracy."""
    from etr_verl.demo.task import build_model, build_tokenizer

    out_dir = Path(out_dir)
    model_dir, marker = out_dir / "model", out_dir / "task.json"
    spec = {"task": "carry", "warm_start_threads": 1, "seed": seed, "warm_steps": warm_steps, "noise": noise,
            "hidden": hidden, "layers": layers, "n_train": n_train, "n_val": n_val}
    if hard_share is not None:
        spec["hard_share"] = hard_share
    paths = {"model": str(model_dir), "train": str(out_dir / "train.parquet"), "val": str(out_dir / "val.parquet")}
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(model_dir)
    model = build_model(model_dir, tokenizer, seed, hidden=hidden, layers=layers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the result depends on the thread count (and the CPU: docs/benchmarks.md, 1)
    try:
        warm_start(model, tokenizer, seed, warm_steps, noise, hard_share=hard_share, log=log)
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(model_dir)
    write_parquet(Path(paths["train"]), "train", seed + 1, n_train)
    write_parquet(Path(paths["val"]), "test", seed + 2, n_val)
    accuracy = greedy_accuracy(model_dir, paths["val"])
    log(f"warm start greedy accuracy: {accuracy}")
    marker.write_text(json.dumps({"spec": spec, "greedy_accuracy": accuracy}))
    return paths


def sampled_accuracy(model, tokenizer, pairs: list[tuple[int, int]], samples: int = 8) -> dict[str, float]:
    """mean@k and pass@k at temperature 1, overall and on 3-column sums (``k = samples``)."""
    responses = generate(model, tokenizer, pairs, greedy=False, samples=samples)
    grades = [[score(r, a, b) for r in rs] for rs, (a, b) in zip(responses, pairs)]
    hard = [g for g, (a, b) in zip(grades, pairs) if difficulty(a, b) == MAX_DIGITS]
    result = {"mean@k": sum(map(sum, grades)) / (samples * len(grades)),
              "pass@k": sum(max(g) for g in grades) / len(grades)}
    if hard:
        result.update({"3-column mean@k": sum(map(sum, hard)) / (samples * len(hard)),
                       "3-column pass@k": sum(max(g) for g in hard) / len(hard)})
    return result


def main(argv: list[str] | None = None) -> None:
    """Calibrate a warm start without verl: its greedy and temperature-1 accuracy on the validation problems.

        python benchmarks/carry_task.py --warm-steps 600 --noise 0 --hard-share 0.05
    """
    import argparse
    import tempfile

    from etr_verl.demo.task import build_model, build_tokenizer

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-steps", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--hard-share", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the warm start (its result depends on them; build_task uses 1)")
    parser.add_argument("--n-val", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp))
        model = build_model(Path(tmp), tokenizer, 0)
        warm_start(model, tokenizer, 0, args.warm_steps, args.noise, hard_share=args.hard_share, log=lambda m: None)
        pairs = problems(2, args.n_val)  # build_task's validation problems (seed + 2)
        print(f"warm start: {args.warm_steps} steps, noise {args.noise}, hard share {args.hard_share}, "
              f"{args.threads} thread(s)")
        print("greedy:", {k: round(v, 3) for k, v in accuracy_by_digits(model, tokenizer, pairs).items()})
        print("temperature 1, k = 8:", {k: round(v, 3) for k, v in sampled_accuracy(model, tokenizer, pairs).items()})


if __name__ == "__main__":
    main()
