"""benchmarks/learning.py --quick: the whole pipeline (one ETR run of verl's real trainer, aggregation, plots)."""

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
    for png in ("learning_val_accuracy.png", "learning_entropy.png", "learning_clip_fraction.png",
                "learning_eps_high.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
