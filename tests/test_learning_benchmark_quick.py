"""benchmarks/learning.py --quick: the whole pipeline (the carry miniature built, one ETR run of verl's real trainer,
greedy accuracy and the evaluation set, its large-k measure included, on its saved checkpoints, aggregation,
plots)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


def test_learning_benchmark_quick_mode(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    results = (tmp_path / "results.md").read_text()
    assert "| etr | 1 |" in results and "Step time" in results
    for png in ("learning_greedy_accuracy.png", "learning_pass_at_k.png", "learning_entropy.png",
                "learning_clip_fraction.png", "learning_eps_high.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    greedy = json.loads((tmp_path / "runs" / "etr" / "seed0.greedy.json").read_text())
    assert sorted(greedy, key=int) == ["0", "1", "2"]  # the warm start, then every saved step
    assert all(0.0 <= acc["all"] <= 1.0 for acc in greedy.values())
    assert not (tmp_path / "runs" / "etr" / "seed0_checkpoints").exists()  # evaluated, then removed
    eval_set = json.loads((tmp_path / "runs" / "etr" / "seed0.eval.json").read_text())
    assert sorted(eval_set, key=int) == ["0", "1", "2"]
    assert all({"all", "3", "mean@k", "pass@k"} <= set(acc) for acc in eval_set.values())
    large_k = ["3-column pass@1 of 4", "3-column pass@2 of 4", "3-column pass@4 of 4"]  # --quick's 4 samples
    assert all(acc[large_k[0]] <= acc[large_k[1]] <= acc[large_k[2]] for acc in eval_set.values())
    for png in ("learning_eval_greedy.png", "learning_eval_pass_at_j.png", "learning_eval_large_k.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    rows = [json.loads(line) for line in (tmp_path / "runs" / "etr" / "seed0.jsonl").read_text().splitlines()]
    # verl's own validation before training and at the last step; the evaluation set covers each checkpoint
    assert [r["step"] for r in rows if any(k.startswith("val-core/") for k in r["data"])] == [0, 2]
    summary = json.loads((tmp_path / "summaries.json").read_text())["etr"][0]
    assert {"greedy_final", "pass_at_k_final", "mean_at_k_final", "clipfrac_pos", "clipfrac_neg",
            "eval_greedy_final", "eval_pass_at_k_auc"} <= set(summary)
