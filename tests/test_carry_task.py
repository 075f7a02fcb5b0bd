"""The learning benchmark's miniature (benchmarks/carry_task.py) and its aggregation (benchmarks/learning.py):
worked solutions that verl's own grader accepts, noise that breaks only the arithmetic, a mix of difficulties,
and the summary and paired-by-seed tables computed from verl-shaped metric rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from etr_testkit import load_script

# not run on the other verl releases by `make test-versions`: the learning benchmark's task files
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
carry = load_script(ROOT / "benchmarks" / "carry_task.py", "carry_task")


@pytest.mark.parametrize(("a", "b", "expected"), [
    (47, 85, "7+5=12 4+8+1=13 #### 132"),
    (999, 999, "9+9=18 9+9+1=19 9+9+1=19 #### 1998"),
    (5, 3, "5+3=8 #### 8"),
    (100, 7, "0+7=7 0+0=0 1+0=1 #### 107"),
])
def test_worked_solutions_by_hand(a, b, expected):
    assert carry.worked_solution(a, b) == expected


def test_verl_grades_every_clean_solution_right_and_noise_only_breaks_the_arithmetic():
    from verl.utils.reward_score.gsm8k import compute_score

    rng = random.Random(0)
    pairs = carry.problems(1, 300)
    assert all(compute_score(carry.worked_solution(a, b), str(a + b)) == 1.0 for a, b in pairs)
    noisy = [carry.worked_solution(a, b, noise=0.3, rng=rng) for a, b in pairs]
    grades = [compute_score(text, str(a + b)) for text, (a, b) in zip(noisy, pairs)]
    assert 0.2 < sum(grades) / len(grades) < 0.8  # some wrong, some right
    assert all(text.count(" #### ") == 1 for text in noisy)  # always the graded form
    assert max(len(carry.worked_solution(a, b)) for a, b in carry.problems(3, 3000)) <= carry.MAX_RESPONSE_TOKENS


def test_problems_mix_difficulties():
    pairs = carry.problems(0, 900)
    share = {d: sum(carry.difficulty(a, b) == d for a, b in pairs) / len(pairs) for d in (1, 2, 3)}
    # operands of 1-3 digits independently: P(max = 1) = 1/9, P(max = 2) = 3/9, P(max = 3) = 5/9
    assert share[1] == pytest.approx(1 / 9, abs=0.04) and share[3] == pytest.approx(5 / 9, abs=0.05)


def _rows(accuracies, entropy, clip_pos):
    rows = []
    for step, (acc, ent, clip) in enumerate(zip(accuracies, entropy, clip_pos)):
        row = {"step": step, "actor/entropy": ent, "actor/etr/pg_clipfrac_adv_pos": clip,
               "actor/etr/pg_clipfrac_adv_neg": clip / 2, "actor/pg_clipfrac": 1.5 * clip}
        if step % 2 == 0:
            row["val-core/openai/gsm8k/acc/mean@8"] = acc
            row["val-core/openai/gsm8k/acc/best@8/mean"] = min(1.0, 2 * acc)
        rows.append(row)
    return rows


def test_summaries_and_the_paired_table():
    learning = load_script(ROOT / "benchmarks" / "learning.py", "learning_benchmark")
    greedy = {"0": {"all": 0.3, "3": 0.1}, "2": {"all": 0.4, "3": 0.2}, "4": {"all": 0.6, "3": 0.3}}
    summary = learning.run_summary(_rows([0.2, 0, 0.3, 0, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5], [0.01] * 5), greedy)
    assert summary["greedy_first"] == 0.3 and summary["greedy_final"] == 0.6
    assert summary["greedy_auc"] == pytest.approx((0.35 * 2 + 0.5 * 2) / 4)
    assert summary["pass_at_k_final"] == 1.0 and summary["mean_at_k_final"] == 0.5
    assert summary["greedy_final_d3"] == 0.3
    assert (summary["entropy_first"], summary["entropy_final"]) == (0.9, 0.5)
    assert summary["clipfrac_neg"] == pytest.approx(0.005)
    better = dict(summary, greedy_final=0.7)
    worse = dict(summary, greedy_final=0.55)
    table = learning.paired_table({"grpo": [summary, summary], "etr": [better, worse]}, [0, 1])
    etr_row = next(line for line in table.splitlines() if line.startswith("| etr |"))
    assert "0.025 ± 0.106 (1/2 ahead)" in etr_row  # diffs +0.1 and -0.05


def test_evaluation_set_curves_summaries_and_columns():
    """The evaluation set's measure of the checkpoints becomes its own curves (first / final / AUC), per-difficulty
    finals and the first columns of the results table; runs without it keep the tables they had."""
    learning = load_script(ROOT / "benchmarks" / "learning.py", "learning_benchmark")
    rows = _rows([0.2, 0, 0, 0, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5], [0.01] * 5)
    eval_set = {"0": {"all": 0.5, "3": 0.2, "mean@k": 0.4, "pass@k": 0.6, "3-column pass@k": 0.3},
               "2": {"all": 0.6, "3": 0.3, "mean@k": 0.5, "pass@k": 0.7, "3-column pass@k": 0.4},
               "4": {"all": 0.7, "3": 0.5, "mean@k": 0.6, "pass@k": 0.8, "3-column pass@k": 0.6}}
    summary = learning.run_summary(rows, {"0": {"all": 0.3}, "4": {"all": 0.6}}, eval_set)
    assert (summary["eval_greedy_first"], summary["eval_greedy_final"]) == (0.5, 0.7)
    assert summary["eval_mean_at_k_auc"] == pytest.approx((0.45 * 2 + 0.55 * 2) / 4)
    assert summary["eval_greedy_final_d3"] == 0.5 and summary["eval_pass_at_k_final_d3"] == 0.6
    assert summary["mean_at_k_final"] == 0.5  # verl's own validation, kept beside it
    header = learning.results_table({"grpo": [summary]}).splitlines()[0]
    assert header.startswith("| arm | seeds | eval-set greedy final | eval-set greedy AUC |")
    without = learning.results_table({"grpo": [learning.run_summary(rows)]}).splitlines()[0]
    assert "eval-set" not in without


def test_evaluation_set_is_reproducible_and_mostly_fresh_where_it_matters():
    """The committed warm start measured twice gives the same numbers (fixed problems, fixed sampling seed), and
    its three-column sums (the ones the claim is about) are almost never training or validation problems."""
    import pandas as pd

    task = ROOT / "docs" / "learning_carry" / "task"
    first = carry.eval_set_accuracy(task / "model", greedy_problems=96, sampled_problems=24)
    assert first == carry.eval_set_accuracy(task / "model", greedy_problems=96, sampled_problems=24)
    assert {"all", "1", "2", "3", "mean@k", "pass@k", "3-column mean@k", "3-column pass@k"} <= set(first)
    assert all(0.0 <= value <= 1.0 for value in first.values())
    seen = set()
    for split in ("train", "val"):
        for prompt in pd.read_parquet(task / f"{split}.parquet")["prompt"]:
            seen.add(tuple(int(x) for x in prompt[0]["content"].rstrip("=").split("+")))
    hard = [pair for pair in carry.problems(carry.EVAL_SEED, 1024) if carry.difficulty(*pair) == 3]
    assert len(hard) > 500 and sum(pair in seen for pair in hard) / len(hard) < 0.02


def test_unbiased_pass_at_j_against_counting_every_draw():
    """pass@j from n samples is the share of the C(n, j) ways to draw j of them that include a passing one."""
    from itertools import combinations

    for n, correct in ((4, 0), (4, 1), (5, 2), (6, 6), (8, 3)):
        samples = [1] * correct + [0] * (n - correct)
        for j in range(1, n + 1):
            draws = list(combinations(samples, j))
            assert carry.pass_at(n, correct, j) == pytest.approx(sum(map(max, draws)) / len(draws))
    assert carry.pass_at(64, 3, 1) == pytest.approx(3 / 64)  # pass@1 is the mean accuracy
    for bad in ((4, 1, 5), (4, 5, 1), (4, 1, 0)):
        with pytest.raises(ValueError, match="need 1 <= j <= n"):
            carry.pass_at(*bad)
    assert carry.large_k_points(64) == [1, 2, 4, 8, 16, 32, 64] and carry.large_k_points(6) == [1, 2, 4, 6]
    assert carry.parse_large_k_key(carry.large_k_key(8, 64)) == (8, 64)
    assert carry.parse_large_k_key("3-column pass@k") is None


def test_large_k_measure_of_the_committed_warm_start():
    """The large-k measure on the evaluation set's 3-column sums: reproducible, rising in j from pass@1 (the mean
    accuracy of the samples) to pass@n, and refused with fewer than 2 samples or no 3-column sum."""
    task = ROOT / "docs" / "learning_carry" / "task_h15"
    result = carry.eval_set_accuracy(task / "model", greedy_problems=48, sampled_problems=48, samples=2, large_k=8)
    large = {carry.parse_large_k_key(key): value for key, value in result.items() if carry.parse_large_k_key(key)}
    assert sorted(large) == [(1, 8), (2, 8), (4, 8), (8, 8)]
    values = [large[(j, 8)] for j in (1, 2, 4, 8)]
    assert values == sorted(values) and values[0] < values[-1] and 0.0 < values[-1] <= 1.0
    model, tokenizer = carry.load_saved(task / "model")
    hard = [pair for pair in carry.problems(carry.EVAL_SEED, 48) if carry.difficulty(*pair) == 3]
    assert carry.large_k_accuracy(model, tokenizer, hard, 8) == {key: result[key] for key in result
                                                                 if carry.parse_large_k_key(key)}
    with pytest.raises(ValueError, match="large_k=1: .* at least 2 samples"):
        carry.large_k_accuracy(model, tokenizer, hard, 1)
    with pytest.raises(ValueError, match="no 3-column sums"):
        carry.large_k_accuracy(model, tokenizer, [], 8)


def test_large_k_curves_and_columns_in_the_summaries():
    learning = load_script(ROOT / "benchmarks" / "learning.py", "learning_benchmark")
    rows = _rows([0.2, 0, 0, 0, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5], [0.01] * 5)
    point = {"all": 0.5, "3": 0.2, "mean@k": 0.4, "pass@k": 0.6, "3-column pass@k": 0.3}
    eval_set = {str(step): dict(point, **{carry.large_k_key(j, 4): base + 0.1 * j for j in (1, 2, 4)})
                for step, base in (("0", 0.1), ("2", 0.2), ("4", 0.0))}
    summary = learning.run_summary(rows, None, eval_set)
    assert (summary["eval_d3_pass_at_4_first"], summary["eval_d3_pass_at_4_final"]) == (0.5, pytest.approx(0.4))
    assert summary["eval_d3_pass_at_1_auc"] == pytest.approx((0.25 * 2 + 0.2 * 2) / 4)
    assert [c[0] for c in learning.large_k_columns(4)] == ["3-column pass@1 of 4 final", "3-column pass@1 of 4 AUC",
                                                           "3-column pass@4 of 4 final", "3-column pass@4 of 4 AUC"]
    assert [c[1] for c in learning.large_k_columns(64)][2:4] == ["eval_d3_pass_at_8_final", "eval_d3_pass_at_8_auc"]
    assert learning.large_k_columns(0) == ()
    assert learning.run_summary(rows, None, {s: point for s in ("0", "4")}).keys().isdisjoint(
        {"eval_d3_pass_at_1_final"})  # runs without the measure have no such curve


def test_the_warm_start_mix_of_hard_sums():
    """hard_share=None keeps the task's own mix (so the recorded pilots reproduce); a number sets the share of
    3-column sums among the demonstrations."""
    assert carry.demonstration_pairs(random.Random(4), 50, None) == carry.problems(random.Random(4).randint(0, 10**9),
                                                                                   50)
    for share in (0.0, 0.1, 0.5):
        pairs = carry.demonstration_pairs(random.Random(5), 2000, share)
        hard = sum(carry.difficulty(a, b) == 3 for a, b in pairs) / len(pairs)
        assert len(pairs) == 2000 and hard == pytest.approx(share, abs=0.03)
