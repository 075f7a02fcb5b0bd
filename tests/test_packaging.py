"""The wheel users install: built from this checkout as pip builds it, it carries the licence the metadata names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# not run on the other verl releases by `make test-versions`: the wheel's files
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_apache_license(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir",
         str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("etr_verl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [n for n in names if ".dist-info/" in n and Path(n).name == "LICENSE"]
        assert licenses, f"no LICENSE in the wheel's dist-info: {[n for n in names if '.dist-info/' in n]}"
        text = archive.read(licenses[0]).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert "Apache-2.0" in metadata
