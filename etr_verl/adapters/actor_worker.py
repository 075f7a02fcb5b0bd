"""The legacy trainer's actor worker: verl's ``ActorRolloutRefWorker`` that installs ETR's loss function itself.

verl's legacy ``TaskRunner.run`` builds the ``RayPPOTrainer``, calls ``init_workers`` and ``fit`` in one go: no
driver-side moment exists between the workers' creation and the first update. Its extension point is the worker
class (``TaskRunner.add_actor_rollout_worker``, the one recipes override), so ETR's loss function is installed by
the worker, at the end of verl's own ``init_model``, with the worker's own ``set_loss_fn`` path.
"""

from __future__ import annotations

import functools

from verl.workers.engine_workers import ActorRolloutRefWorker

from etr_verl.adapters.loss_function import etr_loss_function


class EtrActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's actor/rollout/ref worker, plus ETR's loss function on the actor when ``loss_mode=etr``."""

    # functools.wraps copies verl's dispatch registration of init_model (its decorator's attributes), so the
    # worker group dispatches this override exactly as it dispatches verl's own.
    @functools.wraps(ActorRolloutRefWorker.init_model)
    def init_model(self):
        super().init_model()
        if getattr(self, "actor", None) is None:  # a ref- or rollout-only role
            return
        loss_fn = etr_loss_function(self.config.actor)
        if loss_fn is not None:
            self.loss_fn = loss_fn
            self.actor.set_loss_fn(loss_fn)
