"""Test set-up: tests/ on sys.path for etr_testkit; Ray, when a test starts it, binds loopback only; slow test phases
named as they end."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Ray binds all interfaces unless this is 0 before it starts (VERL_NOTES); every test here stays on loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SLOW_PHASE_S = 30.0
_config = None


def pytest_configure(config):
    global _config
    _config = config
    if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two of these on 2 CPUs: one torch thread each, so
        import torch  # that OpenMP's threads do not spin against the other worker's

        torch.set_num_threads(1)


def pytest_runtest_logreport(report):
    """Each slow phase is named as it ends: --durations prints only at the session's end, which a CI time-out kills
    before it comes."""
    terminal = _config.pluginmanager.get_plugin("terminalreporter") if _config is not None else None
    if terminal is not None and report.duration >= SLOW_PHASE_S:
        terminal.write_line(f"[{report.duration:.0f} s, {report.when}] {report.nodeid}")
