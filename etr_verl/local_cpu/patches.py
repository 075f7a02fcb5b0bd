"""The CPU backend's one behaviour patch: the worker process group, over ``gloo``, reachable on loopback only."""

from __future__ import annotations

import functools
import os
import socket
from datetime import timedelta

import torch.distributed as dist


def apply() -> None:
    """Replace the process-group initialisation that ``verl.workers.engine_workers`` imported.

    verl 0.9.1's worker constructor calls ``initialize_global_process_group_ray(timeout_second=None)``, which
    (a) builds the backend string ``cpu:gloo,<device>:<backend>`` — ``cpu:gloo,cpu:gloo`` here, which torch
    rejects — and (b) lets torch's ``env://`` rendezvous start a TCPStore that listens on every interface. Local
    runs must stay on loopback, so the store's listening socket is bound to ``127.0.0.1`` here (one process: an
    in-memory store, no socket at all). Only the name imported into ``engine_workers`` is replaced.
    """
    from verl.workers import engine_workers

    original = engine_workers.initialize_global_process_group_ray
    if getattr(original, "_etr_loopback_gloo", False):
        return

    @functools.wraps(original)
    def initialize_loopback_gloo(timeout_second=None, backend=None):
        if dist.is_initialized():
            return
        rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        timeout = timedelta(seconds=timeout_second) if timeout_second is not None else timedelta(minutes=30)
        store = loopback_store(rank, world_size, timeout)
        dist.init_process_group(backend="gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)

    initialize_loopback_gloo._etr_loopback_gloo = True
    engine_workers.initialize_global_process_group_ray = initialize_loopback_gloo


def loopback_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store: in memory for one process, else a TCPStore whose server socket is bound to
    ``127.0.0.1:$MASTER_PORT`` (torch's own would listen on all interfaces)."""
    if world_size == 1:
        return dist.HashStore()
    host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"])
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"the local CPU backend runs on loopback only; MASTER_ADDR={host!r}")
    if rank != 0:
        return dist.TCPStore(host, port, world_size, is_master=False, timeout=timeout)
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    fd = listener.detach()
    return dist.TCPStore(host, port, world_size, is_master=True, timeout=timeout, master_listen_fd=fd)
