"""The real-model task (benchmarks/smollm2_task.py, issue 30 step 2): a held-out set disjoint from training, the
few-shot chat prompt as verl's dataset builds it, verl's own grade, and the accuracy table's arithmetic."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from etr_testkit import load_script

# the task is pinned with the benchmark (verl 0.9.1's grader and dataset); `make test-versions` skips it
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "smollm2_task.py"
task = load_script(SCRIPT, "smollm2_task")


def test_the_held_out_set_is_512_problems_disjoint_from_training_and_the_examples():
    train, held_out = task.split()
    assert len(held_out) == 512 and len(set(held_out)) == 512
    assert not set(train) & set(held_out)
    assert {kind: sum(p[0] == kind for p in held_out) for kind in task.KINDS} == task.EVAL_COUNTS
    every = [p for kind in task.KINDS for p in task.all_problems(kind)]
    assert sorted(train + held_out) == sorted(every)  # a partition: nothing lost, nothing twice
    shown = {question for question, _ in task.EXAMPLES}
    assert not any(task.question_of(p) in shown for p in every)
    assert task.split() == (train, held_out)  # fixed by its seed
    draw = task.training_draw(400, seed=1)
    assert set(draw) <= set(train) and {k: sum(p[0] == k for p in draw) for k in task.KINDS} == {
        k: 100 for k in task.KINDS}


@pytest.mark.parametrize(("problem", "answer"), [
    (("mul_1x1", 7, 8), 56), (("add_2+1", 59, 8), 67), (("add_2+2", 59, 63), 122), (("mul_2x1", 82, 5), 410)])
def test_verls_grader_takes_the_examples_format_and_only_the_right_number(problem, answer):
    assert task.answer_of(problem) == answer
    question = task.question_of(problem)
    assert task.grade(f"{question} = {answer}\n#### {answer}", problem) == 1.0
    assert task.grade(f"{question} = {answer + 1}\n#### {answer + 1}", problem) == 0.0
    assert task.grade(f"{question} = {answer}", problem) == 0.0  # strict: the number after '#### '
    for _, shown_answer in task.EXAMPLES:  # the examples' own answers are graded as the task's
        number = shown_answer.split("#### ")[1]
        assert task.grade(shown_answer, ("add_2+1", int(number), 0)) == 1.0


def test_verls_dataset_builds_the_few_shot_chat_prompt_from_the_parquet(tmp_path):
    from etr_verl.demo.task import build_tokenizer
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    result = subprocess.run([sys.executable, str(SCRIPT), "data", "--out", str(tmp_path / "task"), "--n-train", "64"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tokenizer = build_tokenizer(tmp_path / "tokenizer")
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": True,
                               "truncation": "error", "filter_overlong_prompts_workers": 1,
                               "cache_dir": str(tmp_path / "cache")})
    train = RLHFDataset([str(tmp_path / "task" / "train.parquet")], tokenizer, config)
    held_out = RLHFDataset([str(tmp_path / "task" / "eval.parquet")], tokenizer, config)
    assert len(train) == 64 and len(held_out) == 512
    item = held_out[0]
    roles = [message["role"] for message in item["raw_prompt"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    _, first = task.split()
    assert item["raw_prompt"][-1]["content"] == f"What is {task.question_of(first[0])}?"
    assert item["reward_model"]["ground_truth"] == str(task.answer_of(first[0]))
    assert item["data_source"] == "openai/gsm8k" and item["extra_info"]["kind"] == first[0][0]


def test_the_accuracy_table_per_kind_with_unbiased_pass_at_j():
    problems = [("mul_1x1", 2, 3), ("mul_1x1", 2, 4), ("add_2+2", 10, 11)]
    samples = [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    table = task.summarise(problems, greedy=[1.0, 0.0, 1.0], samples=samples)
    assert set(table) == {"mul_1x1", "add_2+2", "all"}  # kinds without problems are left out
    mul = table["mul_1x1"]
    assert mul["problems"] == 2 and mul["greedy"] == 0.5 and mul["mean@4"] == 0.25
    assert mul["pass@1"] == pytest.approx(0.25)
    assert mul["pass@2"] == pytest.approx((1 - math.comb(2, 2) / math.comb(4, 2)) / 2)  # 2 of 4 right, then none
    assert mul["pass@4"] == 0.5
    assert table["all"]["pass@4"] == pytest.approx(2 / 3)
    assert table["all"]["greedy_se"] == pytest.approx(math.sqrt((1 / 3) / 3))  # sample variance of (1, 0, 1) is 1/3
    assert "| mul_1x1 | 2 |" in task.format_table(table)


@pytest.mark.parametrize(("extra", "message"), [
    (["--also-samples", "4"], "--also-samples and --also-json go together"),
    (["--also-samples", "8", "--also-json", "b.json"], "--also-samples 8: between 1 and --samples - 1 (7)"),
    (["--also-samples", "0", "--also-json", "b.json"], "--also-samples 0"),
])
def test_a_bad_second_table_is_refused_before_any_engine_starts(tmp_path, extra, message):
    result = subprocess.run([sys.executable, str(SCRIPT), "measure", str(tmp_path / "no-model"), "--json",
                             str(tmp_path / "a.json"), "--samples", "8", *extra], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize("flags, slow", [
    ("fpu avx avx2 fma", True),  # an AVX2 machine: bf16 emulated
    ("fpu avx2 avx512f avx512_bf16", False),
    ("fpu avx2 avx512f amx_bf16 amx_tile", False),
])
def test_bf16_is_called_slow_on_a_cpu_without_bf16_units(tmp_path, flags, slow):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    reason = task.bf16_slow_here(cpuinfo)
    assert (reason is not None) == slow
    assert reason is None or "neither amx_bf16 nor avx512_bf16" in reason
    assert task.bf16_slow_here(tmp_path / "absent") is None  # flags unknown: no claim
