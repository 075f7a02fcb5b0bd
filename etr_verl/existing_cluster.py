"""Joining a Ray cluster that is already running: what the trainer's ``ray.init`` must then not be given.

Ray refuses ``num_cpus``/``num_gpus`` in a ``ray.init`` that connects to an existing cluster ("When connecting to an
existing cluster, num_cpus and num_gpus must not be provided", ``ray/_private/worker.py``): the nodes declared
their resources when they started. The local CPU backend's preset sets both, for the cluster a local run starts
itself. A run joins an existing cluster when ``ray_kwargs.ray_init.address`` or ``RAY_ADDRESS`` names one (a job
submitted with ``ray job submit`` always has ``RAY_ADDRESS``), or when ``ray start`` left its address on this
machine — Ray decides, and :func:`joins_existing_cluster` asks Ray the same question.
"""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, OmegaConf, open_dict

logger = logging.getLogger(__name__)

# what Ray refuses when connecting to an existing cluster and a preset may set (ray.init's own checks)
CLUSTER_OWNED_KWARGS = ("num_cpus", "num_gpus", "resources", "object_store_memory")


def joins_existing_cluster(config: DictConfig) -> bool:
    """Whether ``ray.init(**ray_kwargs.ray_init)`` will connect to a running cluster rather than start one."""
    address = OmegaConf.select(config, "ray_kwargs.ray_init.address", default=None)
    temp_dir = OmegaConf.select(config, "ray_kwargs.ray_init._temp_dir", default=None)
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # a Ray without the helper: the documented variable and argument only
        return bool(address not in (None, "local") or os.environ.get("RAY_ADDRESS") not in (None, "", "local"))
    return canonicalize_bootstrap_address(address, temp_dir) is not None


def leave_resources_to_cluster(config: DictConfig) -> list[str]:
    """When the run joins an existing cluster, drop the ``ray.init`` arguments Ray would refuse there (the nodes'
    own resources count instead). Returns the dropped keys."""
    ray_init = OmegaConf.select(config, "ray_kwargs.ray_init", default=None)
    if ray_init is None:
        return []
    present = [key for key in CLUSTER_OWNED_KWARGS if ray_init.get(key) is not None]
    if not present or not joins_existing_cluster(config):
        return []
    with open_dict(config):
        for key in present:
            del config.ray_kwargs.ray_init[key]
    logger.info("joining a running Ray cluster: its nodes' resources count; ray_init's %s left out", present)
    return present
