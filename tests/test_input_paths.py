"""Issue 31 item 9: a data path or local model that passes the driver's check is one verl's own loaders open in the
worker, and one they could not open is refused before Ray starts, naming the key and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import importlib.util

import pytest
from etr_testkit import HANG_GUARD_S, compose_etr_trainer, for_gpu_backend
from omegaconf import OmegaConf

from etr_verl.demo.runner import trainer_overrides
from etr_verl.demo.task import build_tokenizer, write_parquet
from etr_verl.main import run

LOCAL_CPU_BACKEND = importlib.util.find_spec("verl.plugin") is not None


def _overrides(train: str, val: str, model: str, in_process: bool = False) -> list[str]:
    """The demo's run with these inputs; ``in_process``: the GPU backend (the local CPU backend would register
    its platform and set its variables in this test process, for every later test)."""
    overrides = trainer_overrides({"train": train, "val": val, "model": model}, "etr", steps=1, seed=0,
                                  out_dir=Path("/tmp/unused"))
    return overrides if LOCAL_CPU_BACKEND and not in_process else for_gpu_backend(overrides)


def _verl_dataset(data_files, tokenizer_dir: Path, config):
    """verl's own RL dataset, as the trainer builds it in the worker, over ``data_files`` as the config holds them."""
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return RLHFDataset(data_files=data_files, tokenizer=tokenizer, config=config.data)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory holding the data a user names with ``~``, and a tokenizer for verl's dataset."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    write_parquet(home / "data" / "train.parquet", "train", seed=0, n=8)
    write_parquet(home / "data" / "val.parquet", "test", seed=1, n=4)
    build_tokenizer(home / "tokenizer")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_a_data_path_with_a_tilde_reaches_verl_expanded_and_loads(home, tmp_path):
    """``~`` quoted on the command line (Hydra's grammar refuses it bare) or written in a YAML config."""
    config = compose_etr_trainer(_overrides("'~/data/train.parquet'", "'~/data/val.parquet'", str(home / "tokenizer"),
                                             in_process=True))
    run(config, dry_run=True)  # the driver's checks; the config it leaves is what verl's workers receive
    assert config.data.train_files == str(home / "data" / "train.parquet")
    dataset = _verl_dataset(config.data.train_files, home / "tokenizer", config)
    assert len(dataset) == 8


def test_verl_itself_does_not_expand_a_tilde(home):
    """Why the driver expands it: verl's loader given the string as typed fails (FileNotFoundError or similar)."""
    config = compose_etr_trainer(_overrides("'~/data/train.parquet'", "'~/data/val.parquet'", str(home / "tokenizer"),
                                             in_process=True))
    with pytest.raises(Exception):  # noqa: B017  (datasets raises its own FileNotFoundError subclass)
        _verl_dataset(OmegaConf.select(config, "data.train_files"), home / "tokenizer", config)


def _main(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "etr_verl.main", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=cwd, env=env)


def _bad_inputs(home: Path) -> dict[str, tuple[list[str], str]]:
    (home / "data" / "train.csv").write_text("prompt\n1+1=\n")
    (home / "model_without_config").mkdir()
    good = str(home / "data" / "train.parquet")
    return {
        "directory": (_overrides(str(home / "data"), good, str(home / "tokenizer")),
                      f"data.train_files: {home / 'data'} is a directory; verl reads files"),
        "suffix": (_overrides(str(home / "data" / "train.csv"), good, str(home / "tokenizer")),
                   f"data.train_files: {home / 'data' / 'train.csv'} has a suffix verl's RLHFDataset does not read"),
        "model": (_overrides(good, good, str(home / "model_without_config")),
                  f"actor_rollout_ref.model.path={home / 'model_without_config'} is no Hugging Face model directory"),
    }


@pytest.mark.parametrize("case", ["directory", "suffix", "model"])
def test_what_verl_could_not_open_is_refused_before_ray_starts(home, tmp_path, case):
    overrides, expected = _bad_inputs(home)[case]
    result = _main(overrides, tmp_path, home)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and expected in output, output[-3000:]
    assert "ray init kwargs" not in output and "Started a local Ray instance" not in output


@pytest.mark.parametrize("case", ["directory", "suffix"])
def test_the_refused_data_paths_are_ones_verl_cannot_read(home, case):
    """The check agrees with verl: the data paths it refuses fail in verl's own dataset too."""
    overrides, _ = _bad_inputs(home)[case]
    config = compose_etr_trainer(for_gpu_backend(overrides))
    with pytest.raises(Exception):  # noqa: B017  (verl's ValueError, or datasets' own error for a directory)
        _verl_dataset(config.data.train_files, home / "tokenizer", config)
