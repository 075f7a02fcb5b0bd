"""The supported-verl range: which releases pass, and the refusal a user sees for the others."""

from __future__ import annotations

import pytest

from etr_verl.verl_support import (
    ALLOW_UNTESTED_ENV,
    SUPPORTED_VERL_RANGE,
    UnsupportedVerlError,
    check_verl_version,
    is_supported,
)


@pytest.mark.parametrize("version", ["0.8.0", "0.9.0", "0.9.1", "0.9.2.dev0", "0.9.3"])
def test_tested_releases_and_their_patch_releases_are_supported(version):
    assert is_supported(version)
    assert check_verl_version(version) == version


@pytest.mark.parametrize("version", ["0.7.1", "0.8.0.dev", "0.10.0", "0.10.0.dev0", "1.0.0", "unknown", ""])
def test_other_releases_are_refused_with_the_range_and_the_fix(version, monkeypatch):
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    assert not is_supported(version)
    with pytest.raises(UnsupportedVerlError) as error:
        check_verl_version(version)
    message = str(error.value)
    assert f"verl{SUPPORTED_VERL_RANGE}" in message and f"found verl {version}" in message
    assert "pip install 'verl==" in message and ALLOW_UNTESTED_ENV in message


def test_the_escape_hatch_is_explicit_and_loud(monkeypatch, caplog):
    monkeypatch.setenv(ALLOW_UNTESTED_ENV, "1")
    assert check_verl_version("0.10.0") == "0.10.0"
    assert "untested" in caplog.text and "0.10.0" in caplog.text


def test_the_installed_verl_is_supported():
    import verl

    assert check_verl_version() == verl.__version__
