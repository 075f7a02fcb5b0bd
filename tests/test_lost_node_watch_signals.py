"""etr_verl.lost_node_watch's interrupt lands in a driver that inherited SIGINT ignored (started with `cmd &` from a
script, or under nohup), where Python installs no SIGINT handler and ``_thread.interrupt_main`` alone does nothing; a
real SIGINT stays ignored there. No Ray cluster: the node table's answer is stubbed (tests/test_lost_node_watch.py
runs the watch on a live one)."""

import signal
import subprocess
import sys
import textwrap

import pytest
from etr_testkit import HANG_GUARD_S

pytestmark = pytest.mark.verl_independent  # the watch reads Ray's tables, not verl's

DRIVER = textwrap.dedent("""
    import os, signal, time
    import ray
    from etr_verl.lost_node_watch import LostNodeWatch

    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.getsignal(signal.SIGINT)
    ray.is_initialized = lambda: True  # the watch looks once Ray is up; nothing else of Ray is used here
    start = time.monotonic()

    class Stubbed(LostNodeWatch):
        def check(self):  # a node holding the run's workers is found dead after 2 s
            return "Ray node 0123 at 10.0.0.2 is dead" if time.monotonic() - start > 2 else None

    try:
        with Stubbed(poll_s=0.1, exit_grace_s=30) as watch:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: ignored, as before the watch
            print("a real SIGINT was ignored", flush=True)
            while True:
                time.sleep(0.05)  # the driver's wait (Ray's ray.get checks for signals the same way)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - start:.1f} s: {watch.lost}")
    print("SIGINT ignored again:", signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
""")


def test_the_interrupt_lands_where_sigint_was_ignored_and_a_real_one_stays_ignored():
    result = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=HANG_GUARD_S,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "a real SIGINT was ignored"
    assert lines[1].startswith("interrupted after") and lines[1].endswith("Ray node 0123 at 10.0.0.2 is dead"), lines
    assert lines[2] == "SIGINT ignored again: True"
    assert "did not end within" not in result.stderr  # not the grace's os._exit
