"""ETR's loading paths in fresh interpreters (as a Ray worker starts): whatever module a process imports first, a
broken install, and an unsupported verl — on every supported verl release (these run in `make test-versions`)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from etr_testkit import HANG_GUARD_S


def verl_loads_entry_points() -> bool:
    """verl >= 0.9 loads ``verl.plugins`` entry points on import; 0.8.0 has only ``VERL_USE_EXTERNAL_MODULES``."""
    import verl

    return "verl.plugins" in Path(verl.__file__).read_text()


def _python(code: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, away from the checkout (whose etr_verl would shadow PYTHONPATH)."""
    import sys

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=HANG_GUARD_S, cwd=cwd,
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

    # the same probes with the real install register: the loud module path everywhere, the entry point where verl
    # loads entry points
    healthy = _python(probe, {"VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}, tmp_path)
    assert "REGISTERED" in healthy.stdout, healthy.stderr[-2000:]
    if verl_loads_entry_points():
        healthy = _python(probe, {}, tmp_path)
        assert "REGISTERED" in healthy.stdout, healthy.stderr[-2000:]


@pytest.mark.parametrize(
    "first_import",
    ["etr_verl.config", "etr_verl.plugin", "etr_verl.registration", "etr_verl.adapters.loss_config",
     "etr_verl.adapters.policy_loss", "etr_verl.adapters.advantage", "etr_verl.adapters.loss_function",
     "etr_verl.adapters.actor_worker", "etr_verl.adapters.task_runners", "etr_verl.main"],
)
def test_loud_path_registers_whatever_module_a_process_imports_first(first_import, tmp_path):
    """A Ray worker may import one of our modules before verl (unpickling a loss function, say); with the loud
    module path on, verl's import then runs etr_verl.plugin inside that module's own import. It must still work."""
    if first_import == "etr_verl.adapters.task_runners":
        pytest.importorskip("verl.trainer.main_ppo")
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
    # the entry point prints the message alone (one line, no traceback); the other paths raise it in the import
    raised = "etr_verl.main: error: " if path == "main_dry_run" else "UnsupportedVerlError"
    assert raised in result.stderr and "found verl 0.10.0" in result.stderr, result.stderr[-3000:]
    assert f"verl{SUPPORTED_VERL_RANGE}" in result.stderr and "pip install 'verl==" in result.stderr
