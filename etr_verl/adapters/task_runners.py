"""verl's task runners for ``run_ppo(config, task_runner_class=...)``, with ETR's loss function installed.

Both keep verl's ``run`` (the trainer, its ``fit`` loop and its workers are verl's own); each adds one step at the
extension point its trainer offers:

- legacy ``RayPPOTrainer`` (``trainer.use_v1=false``; verl 0.8's only trainer): ``add_actor_rollout_worker``
  (the override point recipes use) maps the actor role to
  :class:`etr_verl.adapters.actor_worker.EtrActorRolloutRefWorker`, which installs the loss in the worker;
- V1 trainers, any ``trainer.v1.trainer_mode`` (``sync``, ``colocate_async``, ``separate_async``):
  ``init_agent_loop_manager``, which verl's ``TaskRunnerV1.run`` calls after ``trainer.init()`` (workers built)
  and before ``trainer.fit()``, installs it from the driver with the worker group's ``set_loss_fn``.

The user's ``trainer_mode`` is kept: no ETR trainer is registered under a name of its own, because verl's V1
trainer branches on the literal mode name (``trainer_mode == "sync"`` picks the replay buffer, the refill policy
and TransferQueue checkpointing), so a renamed copy of ``sync`` would not behave as ``sync``.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from etr_verl.adapters.actor_worker import EtrActorRolloutRefWorker
from etr_verl.adapters.loss_function import etr_loss_function


def _plain_class(actor_class: Any) -> type:
    """The Python class behind a ``@ray.remote`` class (verl 0.9 decorates its task runners; 0.8 does not)."""
    return getattr(actor_class, "__ray_actor_class__", actor_class)


def _legacy_task_runner_base() -> type:
    try:  # verl >= 0.9: the legacy trainer's runner moved to main_ppo_v0
        from verl.trainer.main_ppo_v0 import TaskRunner
    except ImportError:  # verl 0.8: main_ppo's runner is the legacy one
        from verl.trainer.main_ppo import TaskRunner
    base = _plain_class(TaskRunner)
    if not callable(getattr(base, "add_actor_rollout_worker", None)):
        raise RuntimeError("verl's legacy TaskRunner has no add_actor_rollout_worker; ETR cannot install its loss.")
    return base


def _v1_task_runner_base() -> type:
    try:
        from verl.trainer.main_ppo import TaskRunnerV1
    except ImportError as error:
        raise RuntimeError(
            "this verl has no V1 trainer (verl.trainer.main_ppo.TaskRunnerV1); set trainer.use_v1=false."
        ) from error
    base = _plain_class(TaskRunnerV1)
    if not callable(getattr(base, "init_agent_loop_manager", None)):
        raise RuntimeError("this verl's TaskRunnerV1 has no init_agent_loop_manager: ETR cannot install its loss.")
    return base


def install_etr_loss_in_v1_trainer(trainer: Any, config: Any) -> bool:
    """Install ETR's loss function in a built V1 trainer's actor workers; False when the run does not use it."""
    loss_fn = etr_loss_function(config.actor_rollout_ref.actor)
    if loss_fn is None:
        return False
    trainer.actor_rollout_wg.set_loss_fn(loss_fn)
    return True


def make_file_logger_directory() -> None:
    """Create the parent directory of ``VERL_FILE_LOGGER_PATH`` on the node the task runner runs on. verl's
    ``FileLogger`` opens that path as given and creates a directory only for its default path, so a path whose
    directory exists on the submitting machine but not on the cluster node failed at the first step."""
    path = os.environ.get("VERL_FILE_LOGGER_PATH")
    if path and os.path.dirname(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def legacy_task_runner_class() -> Any:
    """A ``@ray.remote`` subclass of verl's legacy ``TaskRunner`` whose actor workers install ETR's loss."""
    from verl.trainer.ppo.ray_trainer import Role

    class EtrLegacyTaskRunner(_legacy_task_runner_base()):
        def run(self, config):
            make_file_logger_directory()
            return super().run(config)

        def add_actor_rollout_worker(self, config):
            _, worker_group_cls = super().add_actor_rollout_worker(config)
            for role in (Role.ActorRollout, Role.ActorRolloutRef):
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(EtrActorRolloutRefWorker)
            return EtrActorRolloutRefWorker, worker_group_cls

    return ray.remote(num_cpus=1)(EtrLegacyTaskRunner)


def v1_task_runner_class() -> Any:
    """A ``@ray.remote`` subclass of verl's ``TaskRunnerV1`` that installs ETR's loss before ``fit``."""

    class EtrTaskRunnerV1(_v1_task_runner_base()):
        def run(self, config):
            make_file_logger_directory()
            return super().run(config)

        def init_agent_loop_manager(self):
            install_etr_loss_in_v1_trainer(self.trainer, self.config)
            super().init_agent_loop_manager()

    return ray.remote(num_cpus=1)(EtrTaskRunnerV1)


def task_runner_class(config: Any) -> Any:
    """The task runner for ``config``: V1 when ``trainer.use_v1`` is true (verl >= 0.9's default), else legacy."""
    use_v1 = bool(config.trainer.get("use_v1", False))
    return v1_task_runner_class() if use_v1 else legacy_task_runner_class()
