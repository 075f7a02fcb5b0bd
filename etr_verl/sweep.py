"""Hydra sweeps (``python -m etr_verl.main -m algo=grpo,etr ...``): one run per job, each under its own name.

Hydra's basic launcher runs a sweep's jobs one after another in one process. Two things would go wrong without
this module, both silently:

- every job would share one run name (``trainer.experiment_name``; verl's default ``gsm8k`` unless an experiment
  sets it), hence one checkpoint directory (``trainer.default_local_dir``: a later job would *resume* from an
  earlier job's checkpoint) and one metrics file (verl's file logger opens ``<project>/<experiment>.jsonl`` with
  mode ``wb``: the later job erases the earlier one's metrics). Each job's name therefore gets the values it
  sweeps (``gsm8k-algo=etr``), unless the sweep varies ``trainer.experiment_name`` itself;
- a job must not find the previous job's Ray (its placement groups hold the GPUs until the driver disconnects:
  verl then fails with "Total available GPUs 0 is less than total desired GPUs"): :func:`etr_verl.main.launch` ends
  every run with ``ray.shutdown()``, so the next job starts or joins Ray afresh.

Hydra's ``hydra.sweeper.params`` (sweeps declared in a config file) are not read here: sweep on the command line.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf, open_dict

EXPERIMENT_NAME = "trainer.experiment_name"
MULTIRUN_FLAGS = ("-m", "--multirun")


def is_multirun(argv: list[str]) -> bool:
    return any(arg in MULTIRUN_FLAGS for arg in argv)


def swept_keys(overrides: list[str]) -> list[str]:
    """The keys a command line sweeps (``algo=grpo,etr``, ``x=range(1,3)``, ``x=choice(a,b)``, ``x=glob(*)``), in
    command-line order, as Hydra's own parser reads them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, keys = OverridesParser.create(), []
    for arg in overrides:
        if arg.startswith("-") or "=" not in arg:  # flags, and flag values such as `--cfg job`
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # Hydra names a malformed override itself when it parses the command line
            continue
        if override.is_sweep_override():
            keys.append(override.key_or_group)
    return keys


def job_suffix(job_overrides: list[str], keys: list[str]) -> str:
    """``key=value`` of this job for each swept key, joined by commas (a path-safe run-name suffix)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    chosen = {o.key_or_group: o.get_value_element_as_str()
              for o in OverridesParser.create().parse_overrides(job_overrides)}
    return ",".join(f"{key}={chosen[key]}" for key in keys if key in chosen).replace(os.sep, "_")


def name_this_job(config: DictConfig, job_overrides: list[str], keys: list[str],
                  environ: dict[str, str] | None = None) -> str | None:
    """Give this sweep job its own run name (returned), and refuse what would still be shared between jobs:
    ``VERL_FILE_LOGGER_PATH`` (one file for all) and a checkpoint directory without the run name in it."""
    environ = os.environ if environ is None else environ
    problems = []
    if environ.get("VERL_FILE_LOGGER_PATH"):
        problems.append(
            f"VERL_FILE_LOGGER_PATH={environ['VERL_FILE_LOGGER_PATH']} is one file for every job (verl's file logger "
            "truncates it when a job starts): unset it; each job then logs to "
            "$VERL_FILE_LOGGER_ROOT/<project_name>/<experiment_name>.jsonl (VERL_FILE_LOGGER_ROOT defaults to .)")
    name = None
    if keys and EXPERIMENT_NAME not in keys:
        name = f"{OmegaConf.select(config, EXPERIMENT_NAME)}-{job_suffix(job_overrides, keys)}"
        with open_dict(config):
            OmegaConf.update(config, EXPERIMENT_NAME, name)
    checkpoints = OmegaConf.select(config, "trainer.default_local_dir", default=None)
    run_name = OmegaConf.select(config, EXPERIMENT_NAME)
    if checkpoints is not None and str(run_name) not in str(checkpoints):
        problems.append(
            f"trainer.default_local_dir={checkpoints} is one directory for every job (a later job would resume "
            "from an earlier one's checkpoint): put ${trainer.experiment_name} in it, or leave verl's default")
    if problems:
        raise ValueError("this sweep's jobs would overwrite each other:\n  " + "\n  ".join(problems))
    return name
