"""The CPU backend's one behaviour patch: the worker process group, over ``gloo``, reachable on loopback only —
or on the addresses the user names in ``ETR_LOCAL_CPU_HOSTS`` (hosts of their own, e.g. a test's network
namespaces), and on no other."""

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


HOSTS_ENV = "ETR_LOCAL_CPU_HOSTS"
"""Comma-separated addresses of hosts the user controls, on which the CPU backend may listen besides loopback."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def allowed_hosts() -> tuple[str, ...]:
    named = [h.strip() for h in os.environ.get(HOSTS_ENV, "").split(",") if h.strip()]
    return (*LOOPBACK_HOSTS, *named)


def interface_of(address: str) -> str | None:
    """The name of this host's network interface that holds ``address`` (None if none does)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == address for a in addresses):
            return name
    return None


def loopback_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """verl's worker group: :func:`bound_store` at ``$MASTER_ADDR:$MASTER_PORT``."""
    if world_size == 1:
        return dist.HashStore()
    return bound_store(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"]), rank, world_size,
                       timeout, address_source="MASTER_ADDR")


def bound_store(host: str, port: int, rank: int, world_size: int, timeout: timedelta,
                address_source: str = "the rendezvous address") -> dist.Store:
    """The rendezvous store: in memory for one process, else a TCPStore whose server socket is bound to
    ``host:port`` only (torch's own would listen on all interfaces), ``host`` being loopback or one of the hosts
    named in ``ETR_LOCAL_CPU_HOSTS``. Across hosts, gloo's own sockets go through the interface that holds this
    node's address (``GLOO_SOCKET_IFNAME``): by default gloo takes the address the hostname resolves to, often
    127.0.x.x, which the other host cannot reach."""
    if world_size == 1:
        return dist.HashStore()
    if host not in allowed_hosts():
        raise RuntimeError(
            f"the local CPU backend listens on loopback only, and {address_source}={host!r} is not loopback. To run "
            f"it across hosts of your own (e.g. a test's network namespaces), name their addresses on every node: "
            f"{HOSTS_ENV}={host},... (only the addresses named there are accepted)"
        )
    if host not in LOOPBACK_HOSTS and "GLOO_SOCKET_IFNAME" not in os.environ:
        import ray

        node_address = ray.util.get_node_ip_address()
        if node_address not in allowed_hosts():
            raise RuntimeError(f"this node's address {node_address!r} is not named in {HOSTS_ENV}")
        interface = interface_of(node_address)
        if interface:
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    if rank != 0:
        return dist.TCPStore(host, port, world_size, is_master=False, timeout=timeout)
    listener = socket.create_server((host, port), reuse_port=False)
    fd = listener.detach()
    return dist.TCPStore(host, port, world_size, is_master=True, timeout=timeout, master_listen_fd=fd)
