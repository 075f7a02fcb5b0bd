"""Check that this environment has the verl the recipes are pinned to (``recipes/REQUIRED_VERL.txt``).

    python recipes/common/verl_pin.py     # exit 0: it matches; exit 2: names both versions and the install line

``ETR_RECIPE_ALLOW_OTHER_VERL=1`` turns a mismatch into a warning (a run on another verl is not a reproduction).
Standard library only: it runs before anything imports verl.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

PIN_FILE = Path(__file__).resolve().parents[1] / "REQUIRED_VERL.txt"
ALLOW_ENV = "ETR_RECIPE_ALLOW_OTHER_VERL"
MODES = ("pinned",)


def read_pin(path: Path = PIN_FILE) -> dict[str, str]:
    """The ``key: value`` lines of the pin file (comments and blank lines skipped): mode, version, install."""
    pin = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition(":")
        if not separator:
            raise ValueError(f"{path}: line {line!r} is not `key: value`")
        pin[key.strip()] = value.strip()
    missing = [key for key in ("mode", "version", "install") if key not in pin]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    if pin["mode"] not in MODES:
        raise ValueError(f"{path}: mode {pin['mode']!r} is not one of {MODES}")
    return pin


def pin_problem(pin: dict[str, str]) -> str | None:
    """None when the installed verl is the pinned one, else what differs and the install line."""
    try:
        installed = metadata.version("verl")
    except metadata.PackageNotFoundError:
        installed = None
    if installed == pin["version"]:
        return None
    found = f"verl {installed}" if installed else "no verl"
    return (f"the recipes are pinned to verl {pin['version']} (recipes/REQUIRED_VERL.txt) but {sys.executable} has "
            f"{found}. Install the pinned one: {pin['install']}")


def main() -> int:
    problem = pin_problem(read_pin())
    if problem is None:
        return 0
    if os.environ.get(ALLOW_ENV) == "1":
        print(f"[etr-recipe] warning: {problem} ({ALLOW_ENV}=1: going on; this run is not a reproduction)",
              file=sys.stderr)
        return 0
    print(f"[etr-recipe] error: {problem} (or set {ALLOW_ENV}=1 to run on it anyway)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
