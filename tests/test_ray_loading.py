"""ETR registers inside Ray worker processes through every loading path, a broken install is reported, and the
local Ray cluster listens on loopback only."""

from __future__ import annotations

import os

import pytest
from etr_testkit import LOOPBACK, listening_addresses

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0", "conftest must keep Ray on loopback"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def _registries_in_a_worker(env_vars: dict[str, str]) -> dict:
    @ray.remote(num_cpus=0.1, runtime_env={"env_vars": env_vars})
    def probe():
        import verl  # noqa: F401  (plugin loading happens here)
        from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY

        return {
            "loss": "etr" in POLICY_LOSS_REGISTRY,
            "estimator": "etr_grpo" in ADV_ESTIMATOR_REGISTRY,
            "pid": os.getpid(),
        }

    return ray.get(probe.remote(), timeout=300)


def test_entry_point_registers_in_worker(local_ray):
    found = _registries_in_a_worker({"VERL_USE_EXTERNAL_PLUGINS": "auto"})
    assert found["pid"] != os.getpid()
    assert found["loss"] and found["estimator"]


def test_loud_module_path_registers_in_worker_without_entry_points(local_ray):
    none = _registries_in_a_worker({"VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert not none["loss"], "with entry points off and no module, nothing should register"
    loud = _registries_in_a_worker(
        {"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}
    )
    assert loud["loss"] and loud["estimator"]


def test_target_path_registers_in_worker(local_ray):
    @ray.remote(num_cpus=0.1, runtime_env={"env_vars": {"VERL_USE_EXTERNAL_PLUGINS": "none"}})
    def build_actor_policy_loss():
        from omegaconf import OmegaConf
        from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
        from verl.utils.config import omega_conf_to_dataclass

        before = "etr" in POLICY_LOSS_REGISTRY
        cfg = omega_conf_to_dataclass(
            OmegaConf.create({"_target_": "etr_verl.config.EtrPolicyLossConfig", "loss_mode": "etr"})
        )
        return before, type(cfg).__name__, "etr" in POLICY_LOSS_REGISTRY

    assert ray.get(build_actor_policy_loss.remote(), timeout=300) == (False, "EtrPolicyLossConfig", True)


def test_ray_listens_on_loopback_only(local_ray):
    _registries_in_a_worker({})  # make sure workers are up
    ray_sockets = listening_addresses(os.getpid())
    assert ray_sockets, "found no listening socket of this Ray cluster: the check would be vacuous"
    wide = [addr for addr in ray_sockets if not LOOPBACK.match(addr)]
    assert not wide, f"Ray listens beyond loopback: {wide}"
