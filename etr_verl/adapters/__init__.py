"""ETR's verl adapter: one module per verl extension point, imports running one way.

==========================  =====================================================================================
module                      verl extension point
==========================  =====================================================================================
``loss_config``             ``actor.policy_loss._target_``: :class:`EtrPolicyLossConfig` (a ``PolicyLossConfig``)
                            and the ``algorithm.etr`` block
``macro_channel``           the batch field that carries the macro signal from the driver to the loss (``returns``)
``advantage``               ``register_adv_est("etr_grpo")``: GRPO advantages + the macro signal in ``returns``
``policy_loss``             ``register_policy_loss("etr")``: the elastic clipped loss
``loss_function``           the actor worker's loss function (``set_loss_fn``): verl's ``ppo_loss`` with the
                            macro signal of the micro-batch made visible to the ``etr`` loss
``actor_worker``            the actor worker class of the legacy trainer (``TaskRunner.add_actor_rollout_worker``)
``task_runners``            ``run_ppo(config, task_runner_class=...)``: the legacy and the V1 task runners
==========================  =====================================================================================

Import order: ``loss_config`` and ``macro_channel`` import no other adapter; ``advantage``, ``policy_loss`` import
those; ``loss_function`` imports ``policy_loss``; ``actor_worker`` imports ``loss_function``; ``task_runners``
imports ``actor_worker``. Nothing here imports :mod:`etr_verl.registration` (which imports ``advantage`` and
``policy_loss`` to register them).

verl is imported first, here: verl's ``import`` loads its plugins (``etr_verl.plugin``, which registers ETR by
importing the modules of this package). With verl imported before any adapter module starts, no adapter module is
ever half-initialised when that happens.
"""

import verl  # noqa: F401  (first: see the module docstring)
