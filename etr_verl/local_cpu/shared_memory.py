"""Leave no shared memory behind a local run.

Ray ends a run's actors with SIGKILL when the driver shuts it down, so a process that holds POSIX shared memory
cannot unlink it: vLLM's engine core and worker share their message queues through Python's
``multiprocessing.shared_memory`` (``/dev/shm/psm_*``, with ``sem.mp-*`` semaphores), and verl's weight sender a
bucket (``/dev/shm/verl_weights_*``) when its clean-up is cut short. On the local CPU backend, where the driver
started Ray on this machine, the run removes afterwards what appeared under ``/dev/shm`` during it, matches those
names, and no process still maps or holds open.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import time
from pathlib import Path

SHM = Path("/dev/shm")
LEFT_BY_KILLED_PROCESSES = ("psm_*", "sem.mp-*", "verl_weights_*")


def entries() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except OSError:  # no /dev/shm (not Linux): nothing to do
        return set()


def in_use(paths: set[str]) -> set[str]:
    """Those of ``paths`` that a live process maps (``/proc/PID/maps``) or holds open (``/proc/PID/fd``)."""
    used: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            used |= {path for path in paths if path in (proc / "maps").read_text()}
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target in paths:
                    used.add(target)
        except OSError:  # the process ended, or is not ours to read
            continue
    return used


@contextlib.contextmanager
def removed_when_orphaned(patterns: tuple[str, ...] = LEFT_BY_KILLED_PROCESSES, grace_s: float = 15.0):
    """Run the block; then unlink the ``/dev/shm`` entries it created that match ``patterns`` once nobody uses
    them (processes that are being killed get ``grace_s`` to go; an entry still in use then is left alone)."""
    before = entries()
    try:
        yield
    finally:
        left = {str(SHM / name) for name in entries() - before
                if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}
        deadline = time.monotonic() + grace_s
        while left:
            used = in_use(left)
            for path in left - used:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            left = used
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
