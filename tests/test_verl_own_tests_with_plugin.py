"""verl 0.9.1's own CPU tests for tests/trainer/ppo still pass with ETR loaded (no registry clash).

The test files come from verl's 0.9.1 source distribution on PyPI (verl's wheel does not ship them), fetched
once into .cache/ (or taken from $ETR_VERL_SDIST, a path to verl-0.9.1.tar.gz, on offline machines).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VERL_VERSION = "0.9.1"
REPO = Path(__file__).resolve().parents[1]


def _sdist() -> Path:
    given = os.environ.get("ETR_VERL_SDIST")
    if given:
        return Path(given)
    cache = REPO / ".cache" / "verl-sdist"
    found = sorted(cache.glob(f"verl-{VERL_VERSION}.tar.gz"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", f"verl=={VERL_VERSION}", "--no-deps",
             "--no-binary", ":all:", "-d", str(cache)],
            check=True, timeout=600,
        )
        found = sorted(cache.glob(f"verl-{VERL_VERSION}.tar.gz"))
    return found[0]


def test_verl_trainer_ppo_cpu_tests_pass_with_etr_loaded(tmp_path):
    prefix = f"verl-{VERL_VERSION}/tests/trainer/ppo/"
    with tarfile.open(_sdist()) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.name.endswith("_on_cpu.py")]
        assert len(members) >= 5 and all(m.isfile() for m in members), [m.name for m in members]
        # tarfile's extraction filters are newer than some Python 3.11 builds (Debian 12's 3.11.2 has none); these
        # members are plain files renamed to their base names, so none can land outside tmp_path either way
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for member in members:
            member.name = Path(member.name).name
            tar.extract(member, tmp_path, **safe)
    # every test process must have ETR registered: fail the session otherwise
    (tmp_path / "conftest.py").write_text(
        "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, ADV_ESTIMATOR_REGISTRY\n"
        "assert 'etr' in POLICY_LOSS_REGISTRY and 'etr_grpo' in ADV_ESTIMATOR_REGISTRY, 'ETR not loaded'\n"
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
         "-W", "ignore::UserWarning", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 50 and "failed" not in summary, summary
