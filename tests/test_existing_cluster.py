"""Joining a running Ray cluster (``ray job submit``, ``RAY_ADDRESS``): the local CPU backend's ``num_cpus`` /
``num_gpus`` are left to the cluster's nodes (Ray refuses them there); a run that starts its own Ray keeps them.
The live case is tests/test_cluster_submit.py."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from etr_verl.existing_cluster import joins_existing_cluster, leave_resources_to_cluster


@pytest.fixture
def local_cpu_config(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` address file of this machine is found
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        return compose(config_name="etr_trainer", overrides=["backend=local_cpu"])


def test_a_run_that_starts_its_own_ray_keeps_the_backend_resources(local_cpu_config):
    assert not joins_existing_cluster(local_cpu_config)
    assert leave_resources_to_cluster(local_cpu_config) == []
    assert local_cpu_config.ray_kwargs.ray_init.num_gpus == 1


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "ray_init.address"])
def test_a_run_that_joins_a_cluster_leaves_the_resources_to_its_nodes(local_cpu_config, monkeypatch, how):
    if how == "RAY_ADDRESS":  # what `ray job submit` gives the job's entrypoint
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    else:
        with open_dict(local_cpu_config):  # the override a user writes: +ray_kwargs.ray_init.address=...
            local_cpu_config.ray_kwargs.ray_init.address = "127.0.0.1:6379"
    assert joins_existing_cluster(local_cpu_config)
    assert leave_resources_to_cluster(local_cpu_config) == ["num_cpus", "num_gpus"]
    ray_init = local_cpu_config.ray_kwargs.ray_init
    assert "num_cpus" not in ray_init and "num_gpus" not in ray_init and ray_init.include_dashboard is False
