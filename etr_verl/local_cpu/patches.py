"""The CPU backend's one behaviour patch: plain ``gloo`` for the worker process group."""

from __future__ import annotations

import functools


def apply() -> None:
    """Make ``ActorRolloutRefWorker``'s process-group initialisation use ``gloo``.

    verl 0.9.1 calls ``initialize_global_process_group_ray(timeout_second=None)`` in the worker constructor, which
    builds the backend string ``cpu:gloo,<device>:<backend>``; with device ``cpu`` that is ``cpu:gloo,cpu:gloo``,
    which torch rejects. Only the name imported into ``verl.workers.engine_workers`` is wrapped.
    """
    from verl.workers import engine_workers

    original = engine_workers.initialize_global_process_group_ray
    if getattr(original, "_etr_gloo", False):
        return

    @functools.wraps(original)
    def initialize_with_gloo(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_with_gloo._etr_gloo = True
    engine_workers.initialize_global_process_group_ray = initialize_with_gloo
