"""Register ETR into verl 0.9.1's registries, idempotently, from any of the loading paths.

Loading paths (every process that builds an actor config, computes advantages or runs the trainer needs ETR):

1. the ``verl.plugins`` entry point ``etr_verl.plugin`` — ``import verl`` loads it wherever etr-verl is installed;
   verl logs a failure there at DEBUG only, hence 2 and 3;
2. ``actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig`` — importing it registers; a broken install
   fails while verl builds the actor config (driver validation, worker ``init_model``), before any update;
3. ``VERL_USE_EXTERNAL_MODULES=etr_verl.plugin`` — ``import verl`` imports it and raises on failure.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

SUPPORTED_VERL_VERSIONS = ("0.9.1",)
_registered = False
_in_progress = False
ADAPTER_MODULES = ("etr_verl.config", "etr_verl.policy_loss", "etr_verl.advantage", "etr_verl.trainer")


def _still_initializing(finished: str | None) -> str | None:
    """An adapter module whose body is still running (other than ``finished``), if any."""
    for name in ADAPTER_MODULES:
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if module is not None and name != finished and getattr(spec, "_initializing", False):
            return name
    return None


def register(finished: str | None = None) -> None:
    """Register the ``etr`` policy loss, the ``etr_grpo`` estimator and the ``etr_sync`` trainer. Idempotent.

    Every adapter module calls this as its last statement (``finished=__name__``), so importing any of them
    registers ETR. When the first verl import of a process comes from one of them, verl's plugin loader calls
    this while that module is half-initialised: registration then waits for that module's own call.
    """
    global _registered, _in_progress
    if _registered or _in_progress or _still_initializing(finished):
        return
    _in_progress = True
    try:
        check_verl_version()
        from etr_verl import (
            advantage,
            config,  # noqa: F401  (first, so the modules below find it complete)
            policy_loss,
            trainer,
        )

        policy_loss.register()
        advantage.register()
        trainer.register()
        _registered = True
    finally:
        _in_progress = False


def check_verl_version() -> str:
    """Warn loudly when the installed verl is not a version ETR was tested with; return the version."""
    import verl

    version = getattr(verl, "__version__", "unknown")
    if version not in SUPPORTED_VERL_VERSIONS:
        logger.warning(
            "etr-verl was tested with verl %s, found verl %s: the policy-loss and trainer internals it plugs into "
            "change between releases. Install verl==%s.",
            ", ".join(SUPPORTED_VERL_VERSIONS),
            version,
            SUPPORTED_VERL_VERSIONS[-1],
        )
    return version
