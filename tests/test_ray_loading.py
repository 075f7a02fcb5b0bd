"""ETR registers inside Ray worker processes through every loading path, a broken install is reported, and the
local Ray cluster listens on loopback only."""

from __future__ import annotations

import os
import subprocess
import textwrap

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


def _python(code: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, away from the checkout (whose etr_verl would shadow PYTHONPATH)."""
    import sys

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=300, cwd=cwd,
    )


def test_broken_install_is_reported(tmp_path):
    """A broken etr_verl shadowing the real one (a fresh process, as a worker is): the entry point fails silently
    (verl logs it at DEBUG), but both loud paths raise at start-up with the cause."""
    broken = tmp_path / "broken" / "etr_verl"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    for module in ("config.py", "plugin.py"):
        (broken / module).write_text("raise ImportError('simulated broken etr-verl install')\n")
    env = {"PYTHONPATH": str(tmp_path / "broken")}
    probe = """
        import verl
        from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
        print("REGISTERED" if "etr" in POLICY_LOSS_REGISTRY else "MISSING")
    """
    silent = _python(probe, env, tmp_path)
    assert silent.returncode == 0 and "MISSING" in silent.stdout, silent.stderr[-2000:]

    loud = _python(probe, {**env, "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}, tmp_path)
    assert loud.returncode != 0 and "simulated broken etr-verl install" in loud.stderr

    target = _python(
        """
        from omegaconf import OmegaConf
        from verl.utils.config import omega_conf_to_dataclass
        omega_conf_to_dataclass(OmegaConf.create({"_target_": "etr_verl.config.EtrPolicyLossConfig"}))
        """,
        env,
        tmp_path,
    )
    assert target.returncode != 0 and "etr_verl.config" in target.stderr

    healthy = _python(probe, {}, tmp_path)  # the same probe with the real install registers
    assert "REGISTERED" in healthy.stdout, healthy.stderr[-2000:]


def test_ray_listens_on_loopback_only(local_ray):
    _registries_in_a_worker({})  # make sure workers are up
    ray_sockets = listening_addresses(os.getpid())
    assert ray_sockets, "found no listening socket of this Ray cluster: the check would be vacuous"
    wide = [addr for addr in ray_sockets if not LOOPBACK.match(addr)]
    assert not wide, f"Ray listens beyond loopback: {wide}"


@pytest.mark.parametrize(
    "first_import",
    ["etr_verl.config", "etr_verl.plugin", "etr_verl.registration", "etr_verl.adapters.loss_config",
     "etr_verl.adapters.policy_loss", "etr_verl.adapters.advantage", "etr_verl.adapters.loss_function",
     "etr_verl.adapters.actor_worker", "etr_verl.adapters.task_runners", "etr_verl.main"],
)
def test_loud_path_registers_whatever_module_a_process_imports_first(first_import, tmp_path):
    """A Ray worker may import one of our modules before verl (unpickling a loss function, say); with the loud
    module path on, verl's import then runs etr_verl.plugin inside that module's own import. It must still work."""
    result = _python(
        f"""
        import {first_import}
        from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY
        ok = "etr" in POLICY_LOSS_REGISTRY and "etr_grpo" in ADV_ESTIMATOR_REGISTRY
        print("REGISTERED" if ok else "MISSING")
        """,
        {"VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin", "VERL_USE_EXTERNAL_PLUGINS": "none"},
        tmp_path,
    )
    assert result.returncode == 0 and "REGISTERED" in result.stdout, result.stderr[-3000:]


# verl reads its version from a file in verl/__init__.py, before it loads plugins; this makes that read say 0.10.0,
# so every loading path below meets an unsupported verl exactly as it would after `pip install verl==0.10.0`.
PRETEND_VERL_0_10 = """
import builtins, io
_real_open = builtins.open
def _open(path, *args, **kwargs):
    if str(path).endswith("verl/version/version"):
        return io.StringIO("0.10.0")
    return _real_open(path, *args, **kwargs)
builtins.open = _open
"""


@pytest.mark.parametrize("path", ["external_modules", "target", "main_dry_run", "entry_point"])
def test_unsupported_verl_is_refused_on_every_loading_path_with_the_range_named(path, tmp_path):
    """A verl outside the supported range: the loud paths fail at start-up naming the range and the fix; the entry
    point is silent by verl's design (it logs plugin failures at DEBUG), so nothing registers there either."""
    from etr_verl.verl_support import SUPPORTED_VERL_RANGE

    env = {"VERL_USE_EXTERNAL_PLUGINS": "none"}
    if path == "external_modules":
        code, env = "import verl", {**env, "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}
    elif path == "target":
        code = """
        from omegaconf import OmegaConf
        from verl.utils.config import omega_conf_to_dataclass
        omega_conf_to_dataclass(OmegaConf.create({"_target_": "etr_verl.config.EtrPolicyLossConfig"}))
        """
    elif path == "main_dry_run":
        code = """
        import sys
        sys.argv = ["etr_verl.main", "--dry-run", "algo=etr"]
        from etr_verl.main import entry
        entry()
        """
    else:
        code = """
        import verl
        from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
        print("REGISTERED" if "etr" in POLICY_LOSS_REGISTRY else "MISSING")
        """
        env = {"VERL_USE_EXTERNAL_PLUGINS": "auto"}
    result = _python(PRETEND_VERL_0_10 + textwrap.dedent(code), env, tmp_path)
    if path == "entry_point":
        assert result.returncode == 0 and "MISSING" in result.stdout, result.stderr[-3000:]
        return
    assert result.returncode != 0, result.stdout[-2000:]
    assert "UnsupportedVerlError" in result.stderr and "found verl 0.10.0" in result.stderr, result.stderr[-3000:]
    assert f"verl{SUPPORTED_VERL_RANGE}" in result.stderr and "pip install 'verl==" in result.stderr
