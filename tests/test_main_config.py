"""etr_verl.main's Hydra configs: every preset composes from the installed package and passes the driver-side
validation; bad input is reported before Ray starts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module

from etr_testkit import HANG_GUARD_S, for_gpu_backend

from etr_verl.demo.runner import trainer_overrides
from etr_verl.main import RESOLVED_CONFIG_MARKER
from etr_verl.validation import OnPolicyClipWarning, check_clipping_can_bind, validate

PRESETS = ("grpo", "dapo", "etr", "etr_micro", "etr_macro")
FAKE_TASK = {"train": "/nonexistent/train.parquet", "val": "/nonexistent/val.parquet", "model": "/nonexistent/model"}


def _compose(overrides):
    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=overrides)


LOCAL_CPU_BACKEND = importlib.util.find_spec("verl.plugin") is not None
"""The local CPU backend needs verl's platform registry (verl >= 0.9.0)."""
V1_TRAINER = importlib.util.find_spec("verl.trainer.ppo.v1") is not None
"""verl >= 0.9.0 has the V1 trainers; 0.8.0 only the legacy RayPPOTrainer."""
needs_v1 = pytest.mark.skipif(not V1_TRAINER, reason="this verl has no V1 trainer (verl 0.8.0)")
# the entry point's own command-line handling (Hydra's flags, sweeps, help, the README's example): the same on every
# verl release, so `make test-versions` leaves it to the primary's `make test`
independent_of_the_verl_release = pytest.mark.verl_independent


def _demo_overrides(algo, **kwargs):
    """The demo's config; on a verl the local CPU backend does not run on, the same run for GPUs (verl 0.8.0's
    rollout config has no ``seed``, which the demo sets)."""
    from pathlib import Path

    overrides = trainer_overrides(FAKE_TASK, algo, steps=2, seed=0, out_dir=Path("/tmp/unused"), **kwargs)
    if LOCAL_CPU_BACKEND:
        return overrides
    return for_gpu_backend(overrides)


@pytest.mark.parametrize("algo", PRESETS)
@pytest.mark.parametrize("backend", ["gpu", *(pytest.param(name, marks=pytest.mark.skipif(
    not LOCAL_CPU_BACKEND, reason="the local CPU backend needs verl >= 0.9.0")) for name in ("local_cpu", "local_cpu_hf"))])
def test_every_preset_composes_and_validates(algo, backend):
    overrides = [o for o in _demo_overrides(algo) if not o.startswith("backend=")] + [f"backend={backend}"]
    config = _compose(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OnPolicyClipWarning)
        validate(config)
    policy_loss = config.actor_rollout_ref.actor.policy_loss
    if algo.startswith("etr"):
        assert policy_loss.loss_mode == "etr" and config.algorithm.adv_estimator == "etr_grpo"
        assert (policy_loss.etr_alpha > 0) == (algo != "etr_macro")
        assert (policy_loss.etr_beta > 0) == (algo != "etr_micro")
    else:
        assert policy_loss.loss_mode == "vanilla"
    if V1_TRAINER:
        assert config.trainer.v1.trainer_mode == "sync"  # verl's default: the presets leave the trainer to the user
    assert (config.actor_rollout_ref.actor.clip_ratio_high == 0.28) == (algo == "dapo")
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == "etr_verl.plugin"
    rollout = config.actor_rollout_ref.rollout
    if backend != "gpu":  # the GPU backend leaves the rollout to verl (0.8.0 has no default name)
        assert rollout.name == {"local_cpu": "vllm", "local_cpu_hf": "hf"}[backend]
    if backend == "local_cpu":  # what vLLM-CPU refuses or crashes on is off (the preset names each cause)
        assert not rollout.enable_sleep_mode and not rollout.free_cache_engine and not rollout.full_determinism


@pytest.mark.skipif(not LOCAL_CPU_BACKEND, reason="the local CPU backend needs verl >= 0.9.0")
def test_local_backend_gives_verls_workers_every_cpu_unless_told_otherwise(monkeypatch):
    """Ray sets OMP_NUM_THREADS=1 in actors that declare no CPUs (verl's workers) unless it is set: the backend sets
    it, to the caller's value, else to every CPU; the config's runtime env has the last word; GPU runs are left be."""
    from etr_verl.main import local_backend_env

    local = [o for o in _demo_overrides("etr") if not o.startswith("backend=")] + ["backend=local_cpu"]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = local_backend_env(_compose(local))
    assert env["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0))) and env["VERL_PLATFORM"] == "cpu"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert local_backend_env(_compose(local))["OMP_NUM_THREADS"] == "1"
    told = _compose([*local, '++ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS="3"'])
    assert local_backend_env(told)["OMP_NUM_THREADS"] == "3"
    gpu = [o for o in local if o != "backend=local_cpu"] + ["backend=gpu"]
    assert local_backend_env(_compose(gpu)) == {}


def test_presets_differ_only_in_the_algorithm():
    def flat(cfg, prefix=""):
        from omegaconf import OmegaConf

        out = {}
        for key, value in OmegaConf.to_container(cfg, resolve=False).items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                out.update(flat(OmegaConf.create(value), path + "."))
            else:
                out[path] = value
        return out

    base = flat(_compose(_demo_overrides("etr")))
    for algo in PRESETS:
        diff = {k for k, v in flat(_compose(_demo_overrides(algo))).items() if base.get(k) != v}
        diff |= set(base) - set(flat(_compose(_demo_overrides(algo))))
        allowed = ("actor_rollout_ref.actor.policy_loss.", "actor_rollout_ref.actor.clip_ratio",
                   "algorithm.adv_estimator",
                   "trainer.experiment_name", "trainer.default_local_dir", "algo_name")
        assert all(k.startswith(allowed) for k in diff), sorted(diff)


def test_on_policy_setup_warns():
    config = _compose(_demo_overrides("etr", updates_per_step=1))
    with pytest.warns(OnPolicyClipWarning, match="no clip bound ever binds"):
        assert not check_clipping_can_bind(config)
    with pytest.warns(OnPolicyClipWarning):
        validate(config)


def test_ppo_epochs_reach_verls_actor_config_and_let_clipping_bind():
    """One mini-batch per step but several epochs: the later epochs are off-policy, so no warning."""
    from verl.utils.config import omega_conf_to_dataclass

    config = _compose(_demo_overrides("etr", updates_per_step=1, ppo_epochs=3))
    assert omega_conf_to_dataclass(config.actor_rollout_ref.actor).ppo_epochs == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", OnPolicyClipWarning)
        assert check_clipping_can_bind(config)


def _main(args, tmp_path, **extra_env):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra_env}
    return subprocess.run([sys.executable, "-m", "etr_verl.main", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=tmp_path, env=env)


def test_misspelled_etr_key_fails_before_ray_starts(tmp_path):
    result = _main(_demo_overrides("etr") + ["+actor_rollout_ref.actor.policy_loss.etr_alfa=1.0"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "etr_alfa" in output
    assert "ray init kwargs" not in output and "Started a local Ray instance" not in output


def test_out_of_range_coefficient_fails_before_ray_starts(tmp_path):
    result = _main(_demo_overrides("etr") + ["actor_rollout_ref.actor.policy_loss.etr_factor_max=9"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "factor_max" in output and "ray init kwargs" not in output


@pytest.mark.parametrize("override, message", [
    ("actor_rollout_ref.rollout.n=1", "actor_rollout_ref.rollout.n=1 with macro elasticity on"),
    ("actor_rollout_ref.actor.policy_loss.etr_alpha=-1", "etr_alpha=-1 is out of range"),
])
def test_a_bad_value_is_one_message_naming_it_not_a_traceback(tmp_path, override, message):
    """Issue 31: an ETR bad-value error came after a traceback through the checks and Hydra's line repeating every
    override; HYDRA_FULL_ERROR=1 still shows where it was raised."""
    result = _main(_demo_overrides("etr") + [override], tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Error executing job with overrides" not in result.stderr
    assert result.stderr.splitlines()[-1] == "(HYDRA_FULL_ERROR=1 shows where it was raised)"
    full = _main(_demo_overrides("etr") + [override], tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode == 1 and "Traceback" in full.stderr and message in full.stderr


def test_unknown_algorithm_etr_key_fails(tmp_path):
    config = _compose(_demo_overrides("etr") + ["+algorithm.etr.reward_hi=2"])
    with pytest.raises(ValueError, match="reward_hi"):
        validate(config)


def test_demo_progress_line_shows_validation_and_training_metrics():
    from etr_verl.demo.runner import progress_line

    line = ("(TaskRunnerV1 pid=1) step:5 - val-core/openai/gsm8k/acc/mean@1:np.float64(0.84375) - "
            "num_turns/mean:np.float64(2.0) - critic/score/mean:0.453125 "
            "- actor/entropy:0.28 - actor/pg_clipfrac:0.004 - actor/etr/factor_mean:0.887 - timing_s/step:2.99\n")
    assert progress_line(line) == (
        "step 5: val acc 0.844, reward 0.453, entropy 0.280, clipfrac 0.004, factor 0.887, s 2.990"
    )


@needs_v1
@pytest.mark.parametrize("mode", ["sync", "colocate_async", "separate_async"])
def test_every_v1_trainer_mode_validates_with_etr(mode):
    """One override picks the trainer; the ETR preset leaves it alone, and the driver checks pass for each (with
    the rollout GPUs and weight sync that separate_async needs: test_separate_async_settings_are_checked...)."""
    needs = (["actor_rollout_ref.rollout.nnodes=1", "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl"]
             if mode == "separate_async" else [])
    config = _compose(_demo_overrides("etr") + [f"trainer.v1.trainer_mode={mode}", *needs])
    validate(config)
    assert config.trainer.v1.trainer_mode == mode


def test_the_legacy_trainer_validates_and_gets_the_legacy_task_runner():
    from etr_verl.adapters.task_runners import task_runner_class

    overrides = ["trainer.use_v1=false"] if V1_TRAINER else []  # verl 0.8.0: the legacy trainer is the only one
    config = _compose(_demo_overrides("etr") + overrides)
    validate(config)
    assert type(task_runner_class(config)).__name__ == "ActorClass(EtrLegacyTaskRunner)"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(["trainer.v1.trainer_mode=etr_sync"], "etr_sync no longer exists", marks=needs_v1),
        pytest.param(["trainer.v1.trainer_mode=asynchronous"], "not one of verl's trainers", marks=needs_v1),
        (["actor_rollout_ref.rollout.n=1"], "rollout.n=1 with macro elasticity on"),
        (["algorithm.adv_estimator=grpo"], "needs algorithm.adv_estimator=etr_grpo"),
        (["critic.enable=true"], "set critic.enable=false"),
        (["algorithm.use_kl_in_reward=true"], "use_kl_loss=true instead"),
    ],
)
def test_setups_the_exact_macro_signal_cannot_serve_fail_before_ray(overrides, message):
    config = _compose(_demo_overrides("etr") + overrides)
    with pytest.raises(ValueError, match=message):
        validate(config)


def test_auto_macro_source_is_resolved_in_the_config_the_workers_get():
    exact = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.policy_loss.etr_macro_source=auto"])
    validate(exact)
    assert exact.actor_rollout_ref.actor.policy_loss.etr_macro_source == "driver"
    fallback = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.policy_loss.etr_macro_source=auto",
                                                   "algorithm.adv_estimator=grpo"])
    validate(fallback)
    assert fallback.actor_rollout_ref.actor.policy_loss.etr_macro_source == "advantages"


def test_micro_only_etr_needs_no_group_signal():
    """beta = 0: no macro level, so rollout.n=1 and any estimator are fine."""
    validate(_compose(_demo_overrides("etr_micro") + ["actor_rollout_ref.rollout.n=1",
                                                      "algorithm.adv_estimator=grpo"]))


def test_local_backend_refuses_a_ray_already_imported_in_cluster_mode(tmp_path):
    """run() called from a program that imported Ray without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray would listen
    on every interface, so the local backend refuses before starting it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    code = "import ray\nfrom etr_verl.main import check_ray_will_bind_loopback\ncheck_ray_will_bind_loopback()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S,
                            cwd=tmp_path, env=env)
    assert result.returncode != 0 and "would listen on every interface" in result.stderr, result.stderr[-2000:]


def test_entry_point_sets_loopback_before_anything_imports_ray(monkeypatch):
    from etr_verl.main import LOOPBACK_RAY_ENV, keep_local_ray_on_loopback

    monkeypatch.setenv(LOOPBACK_RAY_ENV, "1")  # whatever the caller exported
    keep_local_ray_on_loopback(["algo=etr", "backend=gpu"])
    assert os.environ[LOOPBACK_RAY_ENV] == "1"  # a GPU cluster run is left alone
    keep_local_ray_on_loopback(["algo=etr", "backend=local_cpu"])
    assert os.environ[LOOPBACK_RAY_ENV] == "0"


def test_null_clip_ratio_low_falls_back_to_clip_ratio_as_in_verl():
    config = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.clip_ratio_low=null",
                                                 "actor_rollout_ref.actor.clip_ratio=0.3"])
    validate(config)
    too_wide = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.clip_ratio_low=null",
                                                   "actor_rollout_ref.actor.clip_ratio=0.6"])
    with pytest.raises(ValueError, match="clip_ratio_low \\* policy_loss.etr_factor_max = 0.6"):
        validate(too_wide)


@pytest.mark.parametrize(("overrides", "message"), [
    (["algorithm.adv_estimator=rloo"], "adv_estimator=rloo"),
    (["algorithm.norm_adv_by_std_in_grpo=false"], "Dr.GRPO"),
])
def test_estimators_of_another_advantage_scale_are_warned_about(overrides, message):
    from etr_verl.validation import AdvantageScaleWarning

    config = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.policy_loss.etr_macro_source=auto",
                                                 *overrides])
    with pytest.warns(AdvantageScaleWarning, match=message):
        validate(config)


def test_dual_clip_at_or_below_one_fails_before_ray():
    with pytest.raises(ValueError, match="clip_ratio_c=1.0: the dual-clip bound must be > 1"):
        validate(_compose(_demo_overrides("grpo") + ["actor_rollout_ref.actor.clip_ratio_c=1.0"]))


def test_yaml_infinity_on_the_command_line_is_a_number():
    from verl.utils.config import omega_conf_to_dataclass

    config = _compose(_demo_overrides("etr") + ["actor_rollout_ref.actor.policy_loss.etr_adv_max=.inf"])
    assert omega_conf_to_dataclass(config.actor_rollout_ref.actor).policy_loss.etr_adv_max == float("inf")


@pytest.mark.skipif(not LOCAL_CPU_BACKEND, reason="the local CPU backend needs verl >= 0.9.0")
def test_local_backend_logs_to_console_and_file_only():
    assert list(_compose(["backend=local_cpu"]).trainer.logger) == ["console", "file"]


@independent_of_the_verl_release
def test_the_readme_first_run_example_passes_its_dry_run(tmp_path):
    """The README's first `python -m etr_verl.main` example, run as written, in a user's environment."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```bash\n(python -m etr_verl\.main --dry-run algo=etr.*?)```", readme, re.S)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", block.replace("python ", f"{sys.executable} ", 1)], capture_output=True,
                            text=True, timeout=HANG_GUARD_S, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "passed every driver-side check" in result.stdout


def test_the_budget_preserving_preset_hands_the_driver_its_reading():
    """etr_grpo gets only the ``algorithm`` block: validation copies the loss's coefficients there (what the dry run
    prints and every Ray process gets); a copy already there must agree, and one without a preserving loss is
    refused."""
    from etr_verl.config import EtrAlgorithmConfig
    from etr_verl.validation import validate as validate_again

    config = _compose(_demo_overrides("etr_budget"))
    validate(config)
    copy = EtrAlgorithmConfig.from_algorithm_config(config.algorithm).budget_preserving_reading
    assert copy is not None and copy.budget == "preserve" and (copy.alpha, copy.beta) == (1.0, 0.5)
    validate_again(config)  # a resolved config (a saved run's) validates again
    config.actor_rollout_ref.actor.policy_loss.etr_alpha = 0.7
    with pytest.raises(ValueError, match="disagrees with the loss's keys"):
        validate(config)
    stale = _compose(_demo_overrides("etr") + ["+algorithm.etr.budget_preserving_reading.alpha=1.0",
                                               "+algorithm.etr.budget_preserving_reading.budget=preserve"])
    with pytest.raises(ValueError, match="budget_preserving_reading is set, but the loss is not ETR with"):
        validate(stale)


@pytest.mark.parametrize(("overrides", "message"), [
    (["algorithm.adv_estimator=grpo"], "etr_budget=preserve with algorithm.adv_estimator='grpo'"),
    (["actor_rollout_ref.actor.policy_loss.etr_macro_source=advantages"], "etr_macro_source=advantages"),
    (["critic.enable=true"], "set critic.enable=false"),
    (["actor_rollout_ref.actor.policy_loss.etr_factor_min=1.5"], "out of reach"),
])
def test_setups_the_budget_cannot_serve_fail_before_ray(overrides, message):
    config = _compose(_demo_overrides("etr_budget") + overrides)
    with pytest.raises(Exception, match=message):  # a bad key: Hydra's InstantiationException around ours
        validate(config)


def test_the_dry_run_shows_the_drivers_copy_of_the_reading(tmp_path):
    result = _main(["--dry-run"] + _demo_overrides("etr_budget"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.split("budget_preserving_reading:", 1)[1]
    assert "budget: preserve" in printed and "factor_max: 2.0" in printed


@independent_of_the_verl_release
@pytest.mark.parametrize("flag", [["--info"], ["-i"], ["--info", "searchpath"], ["--dry-run", "--info"]])
def test_hydras_info_flag_works_as_in_any_hydra_app(flag, tmp_path):
    """`--info` takes an optional value: the entry point's own overrides (the experiment configs' search path, a dry
    run's) must not become that value."""
    result = _main(flag, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    configs = Path(__file__).resolve().parents[1] / "hydra_configs"
    assert "Config search path" in output and f"file://{configs}" in output
    assert "invalid choice" not in output
    assert not any(tmp_path.iterdir()), "an --info run writes nothing"


@needs_v1
def test_separate_async_settings_are_checked_before_ray_starts(tmp_path):
    """verl's separate_async trainer asserts its settings only once Ray runs: they fail the dry run, all named."""
    base = ["--dry-run", "experiment=qwen3_8b_base_dapo17k", "algo=etr", "trainer.v1.trainer_mode=separate_async"]
    result = _main(base, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "trainer.v1.trainer_mode=separate_async needs" in output
    assert "actor_rollout_ref.rollout.nnodes=0 must be > 0" in output
    assert "checkpoint_engine.backend=naive" in output and "set it to nccl" in output
    fixed = base + ["actor_rollout_ref.rollout.nnodes=1", "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl"]
    assert _main(fixed, tmp_path).returncode == 0
    uneven = _main(fixed + ["trainer.v1.separate_async.parameter_sync_step=3"], tmp_path)
    assert uneven.returncode != 0
    assert "must equal trainer.v1.separate_async.parameter_sync_step (3)" in uneven.stdout + uneven.stderr


def _run_names(output: str) -> list[tuple[str, str]]:
    """(experiment_name, default_local_dir) of each job's resolved config in a dry-run sweep's output."""
    names = []
    for block in output.split(RESOLVED_CONFIG_MARKER)[1:]:
        trainer = yaml.safe_load(block.split("# etr-verl dry run:", 1)[0])["trainer"]
        names.append((trainer["experiment_name"], trainer["default_local_dir"]))
    return names


@independent_of_the_verl_release
def test_a_dry_run_sweep_names_each_job_and_writes_nothing(tmp_path):
    """`-m algo=grpo,etr`: each job its own run name, checkpoint directory (and so metrics file), and no
    multirun/ directory in the working directory."""
    overrides = [o for o in _demo_overrides("etr") if not o.startswith(("algo=", "trainer.experiment_name=",
                                                                          "trainer.default_local_dir="))]
    result = _main(["-m", "--dry-run", "algo=grpo,etr", *overrides], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _run_names(result.stdout) == [("gsm8k-algo=grpo", "checkpoints/etr_demo/gsm8k-algo=grpo"),
                                         ("gsm8k-algo=etr", "checkpoints/etr_demo/gsm8k-algo=etr")]
    assert not any(tmp_path.iterdir()), "a dry-run sweep wrote into the working directory"


@independent_of_the_verl_release
def test_a_sweep_that_would_share_a_metrics_file_or_checkpoints_is_refused(tmp_path):
    overrides = [o for o in _demo_overrides("etr") if not o.startswith(("algo=", "trainer.experiment_name="))]
    result = _main(["-m", "--dry-run", "algo=grpo,etr", *overrides], tmp_path,
                   VERL_FILE_LOGGER_PATH=str(tmp_path / "metrics.jsonl"))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "this sweep's jobs would overwrite each other" in output
    assert f"VERL_FILE_LOGGER_PATH={tmp_path / 'metrics.jsonl'} is one file for every job" in output
    assert "trainer.default_local_dir=/tmp/unused/checkpoints/etr is one directory for every job" in output
    assert RESOLVED_CONFIG_MARKER not in output, "the first job passed although the sweep was refused"


@independent_of_the_verl_release
def test_help_names_the_entry_point_its_flags_and_every_config_group(tmp_path):
    """Hydra's default page called the app "main", listed algo and backend only (not the experiment groups a
    search-path override adds) and printed all of verl's config."""
    from etr_verl.experiment_configs import EXPERIMENT_GROUPS, find_experiment_configs

    result = _main(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout
    assert output.startswith("python -m etr_verl.main (console script etr-verl-train)")
    assert "--dry-run" in output and "-m algo=grpo,etr" in output and "is powered by Hydra" not in output
    for group in ("algo", "backend", *EXPERIMENT_GROUPS):
        assert f"\n{group}: " in output, group
    experiments = sorted(p.stem for p in (find_experiment_configs() / "experiment").glob("*.yaml"))
    assert f"experiment: {', '.join(experiments)}" in output
    assert "actor_rollout_ref:" not in output, "the help page printed the whole config"
    assert not any(tmp_path.iterdir()), "--help wrote files"
