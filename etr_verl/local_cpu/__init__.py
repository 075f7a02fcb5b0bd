"""A local CPU backend for verl 0.9.1 — for smoke runs, the embedded demo and tests. Never a production path.

verl 0.9.1 does not run its trainer on a CPU as shipped (no CPU platform, FSDP engines registered for cuda/npu,
rollout only through vLLM/SGLang/TensorRT-LLM servers). This subpackage adds, through verl's own registries:

1. a ``cpu`` platform (``PlatformRegistry``; selected with ``VERL_PLATFORM=cpu``): device ``cpu``, backend
   ``gloo``, Ray resource ``GPU`` backed by logical GPUs (``ray_init.num_gpus``);
2. verl's own vLLM rollout on vLLM's CPU build, its weight sender's waits bounded (:mod:`.vllm_weight_sync`, via
   the rollout registry); vLLM's side is :mod:`.vllm_plugin`, loaded by vLLM's ``vllm.general_plugins``;
3. a rollout replica named ``hf`` (``RolloutReplicaRegistry``, plus the worker-side adapter in the rollout
   registry): a Ray actor generating with ``transformers`` and returning token ids and log-probs, for
   ``backend=local_cpu_hf`` only (reproducible rollouts: the preset says why it exists);
4. one behaviour patch: the worker's process-group initialisation uses plain ``gloo`` (verl builds
   ``cpu:gloo,<device>:<backend>``, which torch rejects when the device is ``cpu``).

It is activated by the ``etr_verl.plugin`` entry point only when ``VERL_PLATFORM=cpu`` is set, so it never loads
in a GPU run. It runs on the verl releases of :data:`etr_verl.verl_support.SUPPORTED_VERL_RANGE` (each tested
with one real training step, ``make test-versions``).
"""

from __future__ import annotations

import os

_active = False


def is_requested() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def activate() -> None:
    """Register the CPU platform, the rollouts and the gloo patch in this process. Idempotent."""
    global _active
    if _active:
        return
    import importlib.util

    from etr_verl.verl_support import check_verl_version

    version = check_verl_version()  # the backend touches verl internals that change between releases
    if importlib.util.find_spec("verl.plugin") is None:
        raise RuntimeError(
            f"the local CPU backend needs verl's platform registry (verl.plugin.platform, verl >= 0.9.0); verl "
            f"{version} has none, and its rollout replicas place their servers on 'cuda'. ETR itself runs on verl "
            f"{version} (legacy trainer); only this CPU smoke-run backend does not."
        )
    from etr_verl.local_cpu import patches, platform

    platform.register()
    register_hf_rollout()
    register_vllm_rollout()
    patches.apply()
    _active = True


def register_vllm_rollout() -> None:
    """verl's vLLM rollout, its weight sender's waits bounded (:mod:`etr_verl.local_cpu.vllm_weight_sync`): the
    registry entry names a module that re-exports verl's ``ServerAdapter`` after bounding them, imported only when
    verl builds a vLLM rollout."""
    from verl.workers.rollout import base

    base._ROLLOUT_REGISTRY[("vllm", "async")] = "etr_verl.local_cpu.vllm_weight_sync.ServerAdapter"


def register_hf_rollout() -> None:
    """Register the ``hf`` rollout by name only: its module is imported when verl asks for it (importing it here
    could run inside that module's own first ``import verl``)."""
    import importlib

    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    module = "etr_verl.local_cpu.hf_rollout"
    RolloutReplicaRegistry.register("hf", lambda: importlib.import_module(module).HFReplica)
    base._ROLLOUT_REGISTRY[("hf", "async")] = f"{module}.HFServerAdapter"  # a private dict in verl 0.9.1
