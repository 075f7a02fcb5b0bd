"""Which verl releases etr-verl supports, and the loud refusal of any other.

The range below is the set of releases the test suite runs against (``make test`` on the primary version,
``make test-versions`` on the others; see the README's tested-versions table). Everything etr-verl plugs into is
looked up by feature where it is used (:mod:`etr_verl.adapters.task_runners` asks verl for the task runner and the
hook it needs, not for a version string); this module only refuses releases outside the tested range, because
verl's internals (loss signature, batch layout, trainer hooks) move between releases in ways a feature probe does
not see.

Set ``ETR_VERL_ALLOW_UNTESTED_VERL=1`` to run on an untested verl anyway (a warning is logged at every
registration): for trying a verl release candidate or branch, never for a result you report.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

SUPPORTED_VERL_RANGE = ">=0.8.0,<0.10"
"""pip specifier of the verl releases etr-verl is tested with."""
PRIMARY_VERL_VERSION = "0.9.1"
"""The release the full test suite, the demo and the Docker image use."""
ALLOW_UNTESTED_ENV = "ETR_VERL_ALLOW_UNTESTED_VERL"


class UnsupportedVerlError(RuntimeError):
    """The installed verl is outside :data:`SUPPORTED_VERL_RANGE`."""


def is_supported(version: str) -> bool:
    """Whether ``version`` (e.g. ``"0.9.1"``, ``"0.9.2.dev0"``) is inside :data:`SUPPORTED_VERL_RANGE`."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return SpecifierSet(SUPPORTED_VERL_RANGE).contains(parsed, prereleases=True)


def check_verl_version(version: str | None = None) -> str:
    """Return the installed verl's version, or raise :class:`UnsupportedVerlError` naming the supported range.

    Args:
        version: the version to check; default: ``verl.__version__`` of the installed verl.
    """
    if version is None:
        import verl

        version = str(getattr(verl, "__version__", "unknown"))
    if is_supported(version):
        return version
    message = (
        f"etr-verl supports verl{SUPPORTED_VERL_RANGE} (tested: see the README's tested-versions table); found verl "
        f"{version}. Install a supported release, e.g. pip install 'verl=={PRIMARY_VERL_VERSION}'."
    )
    if os.environ.get(ALLOW_UNTESTED_ENV, "").strip() == "1":
        logger.warning("%s Continuing because %s=1: results on this verl are untested.", message, ALLOW_UNTESTED_ENV)
        return version
    raise UnsupportedVerlError(f"{message} (To try it anyway, untested: {ALLOW_UNTESTED_ENV}=1.)")
