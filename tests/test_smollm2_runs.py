"""The real-model runner (benchmarks/smollm2_runs.py, issue 30 steps 3-4): what it reads back from a run's files and
the pilots' go/no-go rule, on records written here (no training: the runner's own command is exercised by its CLI
checks; a real run is minutes of the CPU, documented in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from etr_testkit import load_script

pytestmark = pytest.mark.verl_independent  # pinned with the benchmark, as tests/test_smollm2_task.py

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "smollm2_runs.py"
COMPARE = ROOT / "benchmarks" / "smollm2_compare.py"
runs = load_script(SCRIPT, "smollm2_runs")


def _table(mean: float, se: float, greedy: float = 0.5) -> dict:
    row = {"problems": 512, "greedy": greedy, "greedy_se": 0.02, "mean@8": mean, "mean@8_se": se,
           "pass@8": min(1.0, mean + 0.2)}
    return {kind: dict(row) for kind in ("mul_1x1", "add_2+1", "add_2+2", "mul_2x1", "all")}


def _write_run(out: Path, settings, arm: str, seed: int, means: dict[int, float], clipfrac: float) -> None:
    settings.save(out)
    (out / "eval_step0.json").write_text(json.dumps(_table(means[0], 0.01)))
    run_dir = out / "runs" / arm / f"seed{seed}"
    run_dir.mkdir(parents=True)
    for step in runs.checkpoint_steps(settings):
        (run_dir / f"eval_step{step}.json").write_text(json.dumps(_table(means[step], 0.01)))
    with open(run_dir / "metrics.jsonl", "w") as handle:  # verl's FileLogger lines
        for step in range(1, settings.steps + 1):
            data = {"actor/entropy": 1.0 - 0.01 * step, "actor/pg_clipfrac": 0.5 if step == 1 else clipfrac,
                    "critic/score/mean": 0.3, "timing_s/step": 60.0}
            handle.write(json.dumps({"step": step, "data": data}) + "\n")


def test_checkpoints_are_every_eval_every_steps_and_the_last():
    assert runs.checkpoint_steps(runs.Settings(model="m", steps=20, eval_every=5)) == [5, 10, 15, 20]
    assert runs.checkpoint_steps(runs.Settings(model="m", steps=12, eval_every=5)) == [5, 10, 12]


@pytest.mark.parametrize(("best", "clipfrac", "rises", "binds"), [
    (0.35, 0.02, True, True),     # +0.05 against 2 x hypot(0.01, 0.01) = 0.028; 2 % of tokens clipped
    (0.32, 0.02, False, True),    # +0.02: inside two standard errors
    (0.35, 0.005, True, False),   # clipping on 0.5 % of tokens
])
def test_go_no_go_reads_the_best_step_against_two_standard_errors_and_clipping(tmp_path, best, clipfrac, rises,
                                                                               binds):
    settings = runs.Settings(model="m", steps=10, eval_every=5)
    _write_run(tmp_path, settings, "grpo", 0, {0: 0.30, 5: best, 10: 0.31}, clipfrac)
    record = runs.run_record(tmp_path, "grpo", 0, settings)
    verdict = runs.go_no_go(record, settings.samples)
    assert verdict["best_step"] == 5 and verdict["gain"] == pytest.approx(best - 0.30)
    assert verdict["gain_se"] == pytest.approx(0.01 * 2 ** 0.5)
    assert (verdict["accuracy_rises"], verdict["clipping_binds"]) == (rises, binds)
    # step 1 (the warm-up, clipfrac 0.5 here) is left out of the run's mean signals
    assert record["signals"]["clipfrac"] == pytest.approx(clipfrac)
    assert record["signals"]["entropy_first"] == pytest.approx(0.99)
    assert record["signals"]["entropy_last"] == pytest.approx(0.90)


def test_report_only_prints_each_measured_step_and_the_verdict(tmp_path):
    settings = runs.Settings(model="m", steps=10, eval_every=5)
    _write_run(tmp_path, settings, "grpo", 0, {0: 0.30, 5: 0.35, 10: 0.40}, 0.02)
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--arms", "grpo", "--seeds", "0",
                             "--report-only"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 0", "| 5", "| 10"]
    assert rows[-1].split(" | ")[1] == "0.400"
    assert "best_step 10" in result.stdout and "accuracy_rises True" in result.stdout


def test_bad_input_is_refused_before_anything_runs(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), *args],
                              capture_output=True, text=True, timeout=120)

    missing = run("--model", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "benchmarks/smollm2_model.py" in missing.stderr
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    unknown = run("--model", str(model), "--arms", "grpo,nonesuch")
    assert unknown.returncode == 2 and "nonesuch" in unknown.stderr
    too_far = run("--model", str(model), "--steps", "4", "--eval-every", "5")
    assert too_far.returncode == 2 and "--eval-every 5" in too_far.stderr
    half = run("--model", str(model), "--measure-dtype", "float16")
    assert half.returncode == 2 and "--measure-dtype float16: one of float32, bfloat16" in half.stderr
    assert not (tmp_path / "out").exists()


def _write_etr_metrics(out: Path, seed: int, factor_mean: float, zero_share: float, steps: int = 10) -> None:
    run_dir = out / "runs" / "etr" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as handle:
        for step in range(1, steps + 1):
            data = {"actor/etr/factor_mean": 2.0 if step == 1 else factor_mean,
                    "actor/etr/zero_variance_share": zero_share}
            handle.write(json.dumps({"step": step, "data": data}) + "\n")


def test_the_static_control_takes_etrs_mean_range_over_responses_with_a_gradient(tmp_path):
    """grpo_matched: one clip range for every response, ETR's clip ratios (0.2) times the mean factor of the
    responses with a gradient, from the etr runs in this runner's layout (runs/etr/seedN/metrics.jsonl)."""
    settings = runs.Settings(model="m", steps=10)
    # per step: 0.25 of the responses in zero-variance groups at factor_min 0.5, the rest at f
    # (0.875 - 0.25 x 0.5) / 0.75 = 1.0 for seed 0, (0.8 - 0.125) / 0.75 = 0.9 for seed 1; step 1 left out
    _write_etr_metrics(tmp_path, 0, 0.875, 0.25)
    _write_etr_metrics(tmp_path, 1, 0.8, 0.25)
    arm = runs.static_control(tmp_path, [0, 1], settings)
    overrides = " ".join(arm.overrides())
    assert "clip_ratio_low=0.19" in overrides and "clip_ratio_high=0.19" in overrides
    assert "etr_alpha=0" in overrides and "etr_beta=0" in overrides  # both levels off: a static range
    frozen = json.loads((tmp_path / "matched_range.json").read_text())
    assert frozen["informative_factor_per_seed"] == pytest.approx([1.0, 0.9])


def test_the_static_control_is_refused_before_its_etr_runs_exist(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--model", str(model),
                             "--arms", "grpo_matched", "--seeds", "0,1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--arms etr --seeds 0,1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_start_and_the_last_step_are_measured_for_breadth_in_one_engine(tmp_path, monkeypatch):
    """The last step: one measure of breadth_samples answers per problem, whose first k make the step's k-sample
    table (unless it exists); other steps: the k-sample measure alone; what exists is not measured again."""
    calls = []

    def fake_measure(arguments, model_dir):
        calls.append(arguments)
        for flag in ("--json", "--also-json"):
            if flag in arguments:
                Path(arguments[arguments.index(flag) + 1]).write_text(json.dumps(_table(0.3, 0.01)))

    monkeypatch.setattr(runs, "_run_measure", fake_measure)
    settings = runs.Settings(model="m", steps=10, eval_every=5, samples=8, breadth_samples=32)
    runs.measure_step("ckpt5", tmp_path, 5, settings, last=False)
    runs.measure_step("ckpt10", tmp_path, 10, settings, last=True)
    assert calls[0] == ["ckpt5", "--json", str(tmp_path / "eval_step5.json"), "--samples", "8", "--dtype", "bfloat16"]
    assert calls[1] == ["ckpt10", "--json", str(tmp_path / "eval_step10_breadth.json"), "--samples", "32",
                        "--dtype", "bfloat16", "--also-samples", "8", "--also-json", str(tmp_path / "eval_step10.json")]
    assert runs.step_measured(tmp_path, 10, settings, last=True)
    runs.measure_step("ckpt10", tmp_path, 10, settings, last=True)
    assert len(calls) == 2
    # a start measured before (the copied k-sample table): its breadth measure alone
    (tmp_path / "eval_step0.json").write_text(json.dumps(_table(0.3, 0.01)))
    assert not runs.step_measured(tmp_path, 0, settings, last=True)
    runs.measure_step("model", tmp_path, 0, settings, last=True)
    assert calls[2] == ["model", "--json", str(tmp_path / "eval_step0_breadth.json"), "--samples", "32",
                        "--dtype", "bfloat16"]


def test_folders_saved_before_the_breadth_measure_load_without_it(tmp_path):
    settings = runs.Settings(model="m")
    saved = {k: v for k, v in asdict(settings).items() if k not in ("breadth_samples", "measure_dtype")}
    (tmp_path / "settings.json").write_text(json.dumps(saved))
    assert runs.Settings.load(tmp_path).breadth_samples == 0
    assert runs.Settings.load(tmp_path).measure_dtype == "float32"  # as they were measured


def test_report_prints_breadth_at_the_start_and_the_last_step(tmp_path):
    settings = runs.Settings(model="m", steps=10, eval_every=5)
    _write_run(tmp_path, settings, "grpo", 0, {0: 0.30, 5: 0.35, 10: 0.40}, 0.02)
    for path, value in ((tmp_path / "eval_step0_breadth.json", 0.6),
                        (tmp_path / "runs" / "grpo" / "seed0" / "eval_step10_breadth.json", 0.5)):
        table = _table(0.3, 0.01)
        table["all"].pop("pass@8")
        table["all"].update({"pass@1": 0.3, "pass@32": value})
        path.write_text(json.dumps(table))
    text = runs.report(tmp_path, ["grpo"], [0], settings)
    assert "breadth at step 0 (all kinds, 32 samples): pass@1 0.300, pass@32 0.600" in text
    assert "breadth at step 10 (all kinds, 32 samples): pass@1 0.300, pass@32 0.500" in text


def test_the_comparison_pairs_each_arm_with_grpo_on_the_seeds_both_finished(tmp_path):
    """``smollm2_compare.py``: mean ± sd per arm over its finished seeds, arm - grpo over the seeds both finished,
    an unfinished run named and left out, and the plots written."""
    settings = runs.Settings(model="m", steps=10, eval_every=5, breadth_samples=0)
    finals = {("grpo", 0): 0.40, ("grpo", 1): 0.50, ("etr", 0): 0.46, ("etr", 1): 0.52}
    for (arm, seed), final in finals.items():
        _write_run(tmp_path, settings, arm, seed, {0: 0.30, 5: 0.35, 10: final}, 0.02)
    (tmp_path / "runs" / "etr" / "seed1" / "eval_step10.json").unlink()  # trained, last step not measured yet
    result = subprocess.run([sys.executable, str(COMPARE), "--out", str(tmp_path), "--arms", "grpo,etr",
                             "--seeds", "0,1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "comparison.md").read_text()
    grpo = next(line for line in text.splitlines() if line.startswith("| grpo | 2 |")).split(" | ")
    assert grpo[3] == "0.450 ± 0.071"  # mean@8 at step 10 over seeds 0 and 1
    paired = next(line for line in text.splitlines() if line.startswith("| etr (seeds 0) |")).split(" | ")
    assert paired[2] == "0.060 ± 0.000 (1/1 ahead)"  # 0.46 - 0.40 on seed 0 alone
    assert "Not finished (left out above): etr seed 1." in text
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["smollm2_clipfrac.png", "smollm2_entropy.png",
                                                              "smollm2_mean_at_k.png"]


def test_the_comparison_refuses_a_folder_without_runs(tmp_path):
    result = subprocess.run([sys.executable, str(COMPARE), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and f"--out {tmp_path}: no settings.json there" in result.stderr
