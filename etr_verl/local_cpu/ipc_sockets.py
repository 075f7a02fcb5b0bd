"""Leave no vLLM socket file behind a local run.

vLLM's engine core and API server talk over ZeroMQ IPC sockets, files named by a UUID in ``VLLM_RPC_BASE_PATH``
(default: the temp dir, ``vllm.utils.network_utils.get_open_zmq_ipc_path``). vLLM removes them when it shuts down,
but Ray ends a run's actors with SIGKILL, so each local run left several in /tmp (seven in a 3-step test run). On
the local CPU backend the run gives vLLM a directory of its own, inherited by the Ray it starts, and removes it
afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

VARIABLE = "VLLM_RPC_BASE_PATH"


@contextlib.contextmanager
def private_to_the_run() -> Iterator[str | None]:
    """Point vLLM's IPC sockets into a new temp directory for the block, then remove it; a caller's own
    ``VLLM_RPC_BASE_PATH`` is left alone (yields None then)."""
    if os.environ.get(VARIABLE):
        yield None
        return
    path = tempfile.mkdtemp(prefix="etr-vllm-ipc-")  # short: a socket's path must fit in 107 bytes
    os.environ[VARIABLE] = path
    try:
        yield path
    finally:
        os.environ.pop(VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)
