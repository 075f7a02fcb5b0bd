"""The overhead benchmark runs (CI-sized `--quick`) and prints every ratio it promises."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def test_overhead_benchmark_quick_mode_prints_ratios():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--reps", "1", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("worst loss time ratio:", "etr_grpo speed-up vs grpo:", "etr_grpo / grpo_vectorized:"):
        assert line in result.stdout, result.stdout
