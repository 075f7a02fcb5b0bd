"""``python -m etr_verl.main`` (console script ``etr-verl-train``): verl's PPO trainers with ETR, Hydra-configured.

The primary config ``etr_verl/hydra_configs/etr_trainer.yaml`` extends verl's ``ppo_trainer`` with an algorithm
preset (``algo=grpo|dapo|etr|etr_micro|etr_macro``), optionally one of the paper's experiments from the repository's
``hydra_configs/`` (``experiment=qwen3_8b_base_dapo17k``; :mod:`etr_verl.experiment_configs` puts them on the search
path) and a backend (``backend=gpu|local_cpu``). Everything is
validated in the driver, before Ray starts (:mod:`etr_verl.validation`). Then verl's own ``run_ppo`` runs verl's
own trainer — the legacy ``RayPPOTrainer`` with ``trainer.use_v1=false``, else the V1 trainer in the user's
``trainer.v1.trainer_mode`` — through a task runner that installs ETR's loss function
(:mod:`etr_verl.adapters.task_runners`).

``--dry-run`` (anywhere on the command line) composes, validates and prints the fully resolved config as YAML,
then exits without starting Ray: ``python -m etr_verl.main --dry-run algo=etr data.train_files=...``.

``-m`` runs a Hydra sweep, one job after another in this process (``-m algo=grpo,etr``): each job under its own
run name, each with a Ray session of its own (:mod:`etr_verl.sweep`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from etr_verl.existing_cluster import leave_resources_to_cluster
from etr_verl.experiment_configs import (
    ExperimentConfigsNotFound,
    describe_experiment_groups,
    with_experiment_search_path,
)
from etr_verl.input_paths import check_input_files, expand_home
from etr_verl.local_cpu import ipc_sockets, shared_memory
from etr_verl.lost_node_watch import LostNodeWatch
from etr_verl.ray_runtime_env import forward_to_joined_cluster, reconcile_with_submitted_job
from etr_verl.sweep import is_multirun, name_this_job, swept_keys
from etr_verl.validation import check_logger_credentials, validate

logger = logging.getLogger(__name__)

DRY_RUN_FLAG = "--dry-run"
# a dry run writes nothing: no Hydra output directory, no log file (Hydra's job log goes to the console only)
DRY_RUN_HYDRA_OVERRIDES = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout")
RESOLVED_CONFIG_MARKER = "# ---- etr-verl resolved config (YAML) ----"
_dry_run = False  # set by entry() from the command line, before Hydra parses the rest
_swept: list[str] = []  # the keys a sweep (-m) varies, set by entry(): each job is named by its values


def local_backend_env(config: DictConfig) -> dict[str, str]:
    """Environment variables the local CPU backend needs in this process too (Ray inherits them).

    ``OMP_NUM_THREADS``: every CPU this process may use, unless the caller's shell or the config names a number.
    Ray sets it to 1 in a worker whose actor declares no CPUs and finds it unset
    (``ray._private.utils.set_omp_num_threads_if_unset``); verl's FSDP workers declare none, so without this the
    actor's forward and backward passes would compute on one thread of the machine.
    """
    env_vars = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    if env_vars.get("VERL_PLATFORM") != "cpu":
        return {}
    threads = os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))
    return {"OMP_NUM_THREADS": threads} | {str(k): str(v) for k, v in env_vars.items()}


LOOPBACK_RAY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""``0`` makes Ray bind its servers to loopback only; Ray reads it once, when it is first imported."""
LOCAL_BACKENDS = ("local_cpu", "local_cpu_hf")
LOCAL_BACKEND_ARGS = tuple(f"{prefix}backend={name}" for prefix in ("", "+", "++") for name in LOCAL_BACKENDS)


def keep_local_ray_on_loopback(argv: list[str]) -> None:
    """``backend=local_cpu`` (and ``local_cpu_hf``) promises a Ray cluster on loopback only. Ray reads :data:`LOOPBACK_RAY_ENV` when it is
    first imported, and Hydra imports verl (hence Ray) while it searches ``pkg://verl.trainer.config``, so the
    variable is set here, from the command line, before Hydra runs — whatever the caller exported."""
    if any(arg in LOCAL_BACKEND_ARGS for arg in argv):
        os.environ[LOOPBACK_RAY_ENV] = "0"


def check_ray_will_bind_loopback() -> None:
    """For the local backend: refuse to start Ray when it was already imported in cluster mode (it would listen on
    every interface), e.g. ``run()`` called from a program that imported Ray first."""
    os.environ[LOOPBACK_RAY_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        raise RuntimeError(
            f"backend=local_cpu runs Ray on loopback only, but Ray was imported before {LOOPBACK_RAY_ENV}=0 was "
            "set and would listen on every interface. Start with `python -m etr_verl.main backend=local_cpu ...`, "
            f"or export {LOOPBACK_RAY_ENV}=0 before anything imports Ray."
        )


def run(config: DictConfig, dry_run: bool = False) -> None:
    """Validate, then hand over to verl's own ``run_ppo`` with a task runner that installs ETR's loss function
    (``dry_run``: print the resolved config instead)."""
    env = prepare(config, dry_run)
    if not dry_run:
        launch(config, env)


def prepare(config: DictConfig, dry_run: bool = False) -> dict[str, str]:
    """Everything before Ray starts: the local backend's set-up, every driver-side check, the dry run's print.
    Returns the local backend's variables (empty for another backend)."""
    env = local_backend_env(config)
    if env:
        check_ray_will_bind_loopback()
    os.environ.update(env)  # the local backend's variables, inherited by Ray's processes
    if env:
        from etr_verl import local_cpu

        local_cpu.activate()
    OmegaConf.resolve(config)
    expand_home(config)  # verl's loaders take paths as they are: `~` would reach them unexpanded
    validate(config)
    if not dry_run:  # a shell's settings reach a cluster it joins as they reach a submitted job
        forward_to_joined_cluster(config)
    reconcile_with_submitted_job(config)  # inside `ray job submit`: one owner per runtime-env variable
    if dry_run:  # a dry run checks the config only: a submitting machine need not hold the cluster's files
        print(RESOLVED_CONFIG_MARKER)
        print(OmegaConf.to_yaml(config), end="")
        print("# etr-verl dry run: the config above composed and passed every driver-side check; nothing ran.")
        return env
    check_input_files(config)
    check_logger_credentials(config)
    leave_resources_to_cluster(config)  # a running cluster's nodes declared theirs (not known in a dry run)
    return env


def launch(config: DictConfig, env: dict[str, str]) -> None:
    """verl's own ``run_ppo``, ETR's task runner, the lost-node watch; the run's Ray session ends with it."""
    from verl.trainer.main_ppo import run_ppo

    from etr_verl.adapters.task_runners import task_runner_class

    # a local run stops its Ray itself, then removes the shared memory and socket files its killed processes could not
    cleanup = shared_memory.removed_when_orphaned() if env else contextlib.nullcontext()
    sockets = ipc_sockets.private_to_the_run() if env else contextlib.nullcontext()
    with cleanup, sockets, LostNodeWatch() as watch:  # a lost node ends the run with its cause, not a wait without end
        try:
            run_ppo(config, task_runner_class=task_runner_class(config))
        except KeyboardInterrupt:
            if watch.lost:
                sys.exit(1)  # the cause is printed already; Ray's atexit shutdown still runs
            raise
        finally:
            # the run's Ray session ends with it: a local cluster stops, and on a cluster the driver's placement
            # groups are released (the next job of a Hydra sweep would otherwise find no free GPU)
            import ray

            ray.shutdown()


# --help's list of the paper's config groups (etr_trainer.yaml, hydra.help.template)
OmegaConf.register_new_resolver("etr_experiment_groups", describe_experiment_groups, replace=True)


# what the checks before Ray raise for a bad config, input file or environment (ETRInputError and
# RuntimeEnvConflict are ValueErrors; InstantiationException carries an error of a config dataclass)
INPUT_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, RuntimeError, InstantiationException)


@hydra.main(config_path="hydra_configs", config_name="etr_trainer", version_base=None)
def main(config: DictConfig) -> None:
    try:
        if _swept:
            from hydra.core.hydra_config import HydraConfig

            name_this_job(config, list(HydraConfig.get().overrides.task), _swept)
        env = prepare(config, dry_run=_dry_run)
    except INPUT_ERRORS as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # one message naming the key and the fix, not a traceback through the checks
        sys.exit(f"etr_verl.main: error: {error}\n(HYDRA_FULL_ERROR=1 shows where it was raised)")
    if not _dry_run:
        launch(config, env)


def command_line_overrides(argv: list[str]) -> list[str]:
    """The Hydra overrides of a command line: ``--dry-run`` taken off (Hydra would reject it; it adds
    :data:`DRY_RUN_HYDRA_OVERRIDES`), ``+experiment=X`` read as ``experiment=X`` (the primary config declares the
    slot, so Hydra would refuse to append it), and the experiment configs' search path added when they are found."""
    overrides = [arg for arg in argv if arg != DRY_RUN_FLAG]
    overrides = [arg[1:] if arg.startswith("+experiment=") else arg for arg in overrides]
    # a trailing `--info` (Hydra's one flag with an optional value) must stay last, or it would take an override of
    # ours as its value: ours go before it
    trailing = overrides[-1:] if overrides[-1:] in (["--info"], ["-i"]) else []
    overrides = overrides[: len(overrides) - len(trailing)]
    if DRY_RUN_FLAG in argv:
        overrides += DRY_RUN_HYDRA_OVERRIDES
        if is_multirun(argv):  # Hydra writes a sweep's multirun.yaml whatever the job does: not into the cwd
            sweep_dir = tempfile.mkdtemp(prefix="etr-dry-run-sweep-")
            atexit.register(shutil.rmtree, sweep_dir, ignore_errors=True)
            overrides += [f"hydra.sweep.dir={sweep_dir}"]
    return with_experiment_search_path(overrides) + trailing


def entry() -> None:
    """Command-line entry (``python -m etr_verl.main``, ``etr-verl-train``): prepares the command line
    (:func:`command_line_overrides`), then runs the Hydra app."""
    global _dry_run, _swept
    keep_local_ray_on_loopback(sys.argv[1:])
    _dry_run = DRY_RUN_FLAG in sys.argv[1:]
    _swept = swept_keys(sys.argv[1:]) if is_multirun(sys.argv[1:]) else []
    try:
        sys.argv[1:] = command_line_overrides(sys.argv[1:])
    except ExperimentConfigsNotFound as error:
        sys.exit(f"etr_verl.main: {error}")
    main()


if __name__ == "__main__":
    entry()
