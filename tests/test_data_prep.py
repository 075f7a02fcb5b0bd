"""recipes/data/prepare_math_data.py on small local fixtures shaped like the hub datasets: verl's schema, verl's
dataset and verl's graders accept what it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from etr_testkit import HANG_GUARD_S, load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "data" / "prepare_math_data.py"


prep = load_script(SCRIPT, "prepare_math_data")


def dapo_row(problem: str, answer: str, index: int) -> dict:
    return {"data_source": "math_dapo", "ability": "MATH",
            "prompt": [{"role": "user", "content": prep.DAPO_PREFIX + problem + prep.DAPO_SUFFIX}],
            "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"id-{index}"}}


@pytest.fixture
def fixtures(tmp_path) -> dict[str, Path]:
    """One small file per dataset, with the hub's column names (and its quirks: DAPO repeats problems, AIME
    answers may carry leading zeros, MATH answers live in the solution's last \\boxed{})."""
    files = {}
    rows = [dapo_row("Find $x$ if $2x = 34$.", "17", 0), dapo_row("What is $3^2$?", "9", 1),
            dapo_row("Find $x$ if $2x = 34$.", "17", 2)]
    files["dapo"] = tmp_path / "dapo.parquet"
    pd.DataFrame(rows).to_parquet(files["dapo"])
    files["math"] = tmp_path / "math.parquet"
    pd.DataFrame([
        {"problem": "Compute $\\frac{2}{4}$.", "level": "Level 1", "type": "Algebra",
         "solution": "We have $\\frac{2}{4} = \\boxed{\\frac{1}{2}}$."},
        {"problem": "What is $\\sqrt{16}$?", "level": "Level 1", "type": "Algebra",
         "solution": "Since $4^2=16$, the answer is $\\boxed{4}$."},
    ]).to_parquet(files["math"])
    files["aime24"] = tmp_path / "aime24.jsonl"
    files["aime24"].write_text("\n".join(json.dumps(r) for r in [
        {"id": 60, "problem": "Find the remainder of $2024$ divided by $1000$.", "solution": "...", "answer": "024",
         "url": "https://example.invalid", "year": 2024},
        {"id": 61, "problem": "How many primes are below $10$?", "solution": "...", "answer": "4",
         "url": "https://example.invalid", "year": 2024},
    ]) + "\n")
    files["aime25"] = tmp_path / "aime25.json"
    files["aime25"].write_text(json.dumps([{"problem": "Compute $7 \\cdot 11$.", "answer": "77", "id": "0"}]))
    files["math500"] = tmp_path / "math500.csv"
    pd.DataFrame([{"problem": "Simplify $\\frac{6}{8}$.", "solution": "$\\boxed{\\frac{3}{4}}$",
                   "answer": "\\frac{3}{4}", "subject": "Prealgebra", "level": 2,
                   "unique_id": "test/prealgebra/1.json"}]).to_csv(files["math500"], index=False)
    return files


def run_script(tmp_path, fixtures, *extra) -> subprocess.CompletedProcess:
    local = [arg for name, path in fixtures.items() for arg in ("--local-path", f"{name}={path}")]
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--offline", *local, *extra],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_fixtures_convert_to_verls_schema_and_graders(tmp_path, fixtures):
    from verl.utils.reward_score import default_compute_score

    result = run_script(tmp_path, fixtures)
    reads_boxed = default_compute_score("math_dapo", "The answer is $\\boxed{17}$.", "17")["acc"]
    if not reads_boxed:  # verl 0.9.0: math_dapo reads `Answer: x` only; the script must refuse, not write data
        assert result.returncode != 0 and "math_dapo" in result.stderr, result.stderr[-2000:]
        assert "REQUIRED_VERL.txt" in result.stderr and "==0.9.1" in result.stderr
        assert not (tmp_path / "out").exists()
        return
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    expected = {"dapo_train": ("math_dapo", ["17", "9"]), "math_train": (prep.SOURCES["math"].data_source,
                                                                        ["\\frac{1}{2}", "4"]),
                "aime24": ("aime24", ["24", "4"]), "aime25": ("aime25", ["77"]),
                "math500": ("HuggingFaceH4/MATH-500", ["\\frac{3}{4}"])}
    for stem, (data_source, answers) in expected.items():
        frame = pd.read_parquet(out / f"{stem}.parquet")
        assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
        assert list(frame.data_source) == [data_source] * len(answers)
        assert [r["ground_truth"] for r in frame.reward_model] == answers  # DAPO's duplicate dropped
        for row in frame.itertuples():
            (message,) = row.prompt
            assert message["role"] == "user" and message["content"].endswith(prep.INSTRUCTION)
            assert "Answer: $Answer" not in message["content"]
            truth = row.reward_model["ground_truth"]
            right = default_compute_score(data_source, f"Some reasoning.\nThe answer is $\\boxed{{{truth}}}$.", truth)
            wrong = default_compute_score(data_source, "Some reasoning. The answer is $\\boxed{12345}$.", truth)
            score = right["acc"] if isinstance(right, dict) else right
            assert score == 1, (stem, truth, right)
            assert (wrong["acc"] if isinstance(wrong, dict) else wrong) == 0, (stem, truth, wrong)


def byte_level_tokenizer(path: Path):
    """A tokenizer covering every byte (no merges), with the demo's ChatML template: enough for verl's dataset."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from etr_verl.demo.task import CHAT_TEMPLATE, SPECIALS

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for symbol in pre_tokenizers.ByteLevel.alphabet():
        vocab.setdefault(symbol, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def test_verls_dataset_loads_every_output(tmp_path, fixtures):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    for name, path in fixtures.items():  # the conversion itself (main() also refuses a verl without boxed graders)
        prep.prepare(name, tmp_path / "out", path)
    tokenizer = byte_level_tokenizer(tmp_path / "tokenizer")
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 512, "filter_overlong_prompts": True,
                               "truncation": "error", "filter_overlong_prompts_workers": 1,
                               "cache_dir": str(tmp_path / "cache")})
    files = sorted(str(p) for p in (tmp_path / "out").glob("*.parquet"))
    dataset = RLHFDataset(files, tokenizer, config)
    assert len(dataset) == 8
    items = [dataset[i] for i in range(len(dataset))]
    assert {item["data_source"] for item in items} == {s.data_source for s in prep.SOURCES.values()}
    assert all(item["raw_prompt"][0]["role"] == "user" for item in items)
    assert sorted(item["reward_model"]["ground_truth"] for item in items if item["data_source"] == "aime24") == [
        "24", "4"]


def test_bad_arguments_are_named(tmp_path, fixtures):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--datasets", "aime26"],
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 2 and "unknown dataset(s) ['aime26']" in result.stderr
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--offline", "--datasets", "aime24"],
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 2 and "no --local-path for ['aime24']" in result.stderr
    result = run_script(tmp_path, {"aime24": tmp_path / "missing.jsonl"}, "--datasets", "aime24")
    assert result.returncode == 2 and "missing.jsonl does not exist" in result.stderr


def test_a_math_solution_without_a_boxed_answer_is_an_error():
    with pytest.raises(ValueError, match="no \\\\boxed"):
        prep.convert([{"problem": "p", "solution": "no box here"}], prep.SOURCES["math"])


@pytest.mark.parametrize("name", ["dapo", "math"])
def test_a_file_with_the_wrong_columns_is_named_without_a_traceback(tmp_path, name):
    from verl.utils.reward_score import default_compute_score

    if name == "dapo" and not default_compute_score("math_dapo", "$\\boxed{1}$", "1")["acc"]:
        pytest.skip("this verl's math_dapo grader cannot read boxed answers: the script refuses before reading")
    bad = tmp_path / f"{name}.parquet"
    pd.DataFrame({"question_text": ["1+1?"], "solution_text": ["2"]}).to_parquet(bad)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--offline", "--datasets", name,
         "--local-path", f"{name}={bad}"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "question_text" in result.stderr and str(bad) in result.stderr


# the hub client's failure, not verl's: and a wall-clock bound, which make test-versions-suites could not keep at the
# lowest CPU priority beside make test's live part (CI: .ci/run)
@pytest.mark.verl_independent
def test_an_unreachable_hub_fails_in_seconds_with_the_offline_hint(tmp_path):
    """HF_ENDPOINT pointed at a closed loopback port (no traffic leaves the machine): the script says what to do at
    once instead of waiting out the hub client's retries."""
    import os
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_DATASETS_OFFLINE", None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--datasets", "math500"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and "--local-path math500=FILE" in result.stderr, result.stderr[-2000:]
    assert f"127.0.0.1:{port} does not answer" in result.stderr and time.monotonic() - start < 30
