"""Register ETR into verl's registries: idempotent, loud, from every loading path.

Loading paths (every process that builds an actor config, computes advantages or runs a loss needs ETR):

1. the ``verl.plugins`` entry point ``etr_verl.plugin`` — ``import verl`` loads it wherever etr-verl is installed;
   verl logs a failure there at DEBUG only, hence 2 and 3;
2. ``actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig`` — importing :mod:`etr_verl.config`
   registers; a broken install fails while verl builds the actor config (driver validation, worker
   ``init_model``), before any update;
3. ``VERL_USE_EXTERNAL_MODULES=etr_verl.plugin`` — ``import verl`` imports it and raises on failure.

Each path ends in :func:`register`. It may be entered again while it runs (its first adapter import can be a
process's first ``import verl``, which loads the entry point, which calls it): the inner call then does the whole
registration and the outer one finds it done.
"""

from __future__ import annotations

from etr_verl.verl_support import check_verl_version

REGISTERED = {"policy_loss": "etr", "adv_estimator": "etr_grpo"}
"""What :func:`register` adds to verl, by registry."""


def register() -> None:
    """Register the ``etr`` policy loss and the ``etr_grpo`` advantage estimator (idempotent).

    Raises :class:`etr_verl.verl_support.UnsupportedVerlError` on a verl outside the supported range.
    """
    check_verl_version()
    from etr_verl.adapters import advantage, policy_loss

    policy_loss.register()
    advantage.register()
