"""The CPU backend's worker rendezvous listens on loopback, or on addresses the user names in ETR_LOCAL_CPU_HOSTS
and on no other. Across real (namespaced) hosts: tests/test_two_hosts_submit.py."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import psutil
import pytest

from etr_verl.local_cpu import patches


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_non_loopback_master_is_refused_with_the_variable_that_allows_it(monkeypatch):
    monkeypatch.delenv(patches.HOSTS_ENV, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "192.0.2.7")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    with pytest.raises(RuntimeError, match=r"MASTER_ADDR='192.0.2.7' is not loopback.*ETR_LOCAL_CPU_HOSTS=192.0.2.7"):
        patches.loopback_store(0, 2, timedelta(seconds=5))


def test_only_the_named_addresses_are_accepted(monkeypatch):
    monkeypatch.setenv(patches.HOSTS_ENV, " 192.0.2.8 ,198.51.100.1")
    assert patches.allowed_hosts() == ("127.0.0.1", "localhost", "192.0.2.8", "198.51.100.1")
    monkeypatch.setenv("MASTER_ADDR", "192.0.2.7")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    with pytest.raises(RuntimeError, match="is not loopback"):
        patches.loopback_store(0, 2, timedelta(seconds=5))


def test_on_loopback_the_store_listens_on_127_0_0_1_only(monkeypatch):
    port = _free_port()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    stores = {}
    client = threading.Thread(target=lambda: stores.setdefault(1, patches.loopback_store(1, 2, timedelta(seconds=20))))
    client.start()  # the master waits for every rank to join
    stores[0] = patches.loopback_store(0, 2, timedelta(seconds=20))
    client.join(timeout=30)
    listening = {c.laddr for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert {(ip, p) for ip, p in listening if p == port} == {("127.0.0.1", port)}
    stores[0].set("k", "v")
    assert stores[1].get("k") == b"v"


def test_the_interface_of_an_address_is_found():
    assert patches.interface_of("127.0.0.1") == "lo"
    assert patches.interface_of("192.0.2.250") is None
