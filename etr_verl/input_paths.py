"""The run's input paths (data files, a local model), made and checked as verl's loaders will read them, in the
driver before Ray starts.

verl takes each string as it is: ``RLHFDataset`` picks its reader by the file name's suffix (``.parquet``, else
``.json``/``.jsonl``, else "Unsupported file format") and hands the name to ``datasets.load_dataset``; the model
path goes to ``transformers``' ``from_pretrained``. Neither expands ``~``, nor does Hydra (its grammar refuses a
bare ``~`` on the command line; quoted, ``data.train_files='~/d.parquet'``, or in a YAML config it passes as typed),
so ``~/data/train.parquet`` would pass an ``exists()`` check that expands it and fail in the worker. :func:`expand_home` therefore writes the expanded path
into the config (a dry run prints it), and :func:`check_input_files` checks exactly what verl will open.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

DATA_KEYS = ("data.train_files", "data.val_files")
MODEL_KEY = "actor_rollout_ref.model.path"
# verl.utils.dataset.rl_dataset.RLHFDataset._read_files_and_tokenize: the reader is chosen by these suffixes
VERL_DATA_SUFFIXES = (".parquet", ".json", ".jsonl")
PREPARE_HINT = ("Prepare the data with `python recipes/data/prepare_math_data.py --out DATA_DIR` and pass "
                "paths.data_dir=DATA_DIR (an experiment) or the file itself.")


def _is_local(path: Any) -> bool:
    return path is not None and "://" not in str(path)


def _entries(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def expand_home(config: DictConfig) -> None:
    """Replace a leading ``~`` of the data files and the model path by the home directory, in the config."""
    with open_dict(config):
        for key in (*DATA_KEYS, MODEL_KEY):
            value = OmegaConf.select(config, key, default=None)
            if value is None:
                continue
            expanded = [os.path.expanduser(str(item)) if _is_local(item) and str(item).startswith("~") else item
                        for item in _entries(value)]
            if expanded != _entries(value):
                OmegaConf.update(config, key, expanded if isinstance(value, (list, tuple, ListConfig))
                                 else expanded[0])


def check_input_files(config: DictConfig) -> None:
    """Each local data file exists, is a file, and has a suffix verl's dataset reads (unless ``data.custom_cls``
    names another dataset class); a local model path is a directory with a ``config.json``. Run after
    :func:`expand_home`; a dry run skips it (it may run on a machine that submits the job, not on the cluster
    that reads the files)."""
    verl_dataset = not OmegaConf.select(config, "data.custom_cls.path", default=None)
    for key in DATA_KEYS:
        for entry in _entries(OmegaConf.select(config, key, default=None)):
            if not _is_local(entry):
                continue
            path = Path(str(entry))
            if not path.exists():
                raise FileNotFoundError(f"{key}: {entry} does not exist. {PREPARE_HINT}")
            if path.is_dir():
                raise IsADirectoryError(
                    f"{key}: {entry} is a directory; verl reads files: name each one "
                    f"(a list: {key}=[a.parquet,b.parquet])."
                )
            if verl_dataset and not str(entry).endswith(VERL_DATA_SUFFIXES):
                raise ValueError(
                    f"{key}: {entry} has a suffix verl's RLHFDataset does not read (it picks its reader by the name: "
                    f"{', '.join(VERL_DATA_SUFFIXES)}). Convert the file, or rename it if it is one of those formats."
                )
    model = str(OmegaConf.select(config, MODEL_KEY))
    if model.startswith(("/", ".")):
        if not Path(model).exists():
            raise FileNotFoundError(
                f"{MODEL_KEY}={model} does not exist (a local path; a Hugging Face model is named by its id, org/name)."
            )
        if not (Path(model) / "config.json").is_file():
            raise FileNotFoundError(
                f"{MODEL_KEY}={model} is no Hugging Face model directory (no config.json): for a verl checkpoint, "
                "merge it first (python -m verl.model_merger merge --backend fsdp --local_dir .../actor "
                "--target_dir DIR)."
            )
