"""Two emulated hosts for the multi-host tests: two Linux network namespaces joined by a veth pair, each with an
address of its own from 198.18.0.0/30 (RFC 2544's range for benchmark networks: never routed, and nothing else here
uses it), no default route, so nothing sent inside them can leave. Created and removed by the test; only the
processes started inside them are stopped, by PID (``ip netns pids``).

    with TwoHosts() as hosts:             # raises NamespacesUnavailable where `ip netns add` is not permitted
        hosts.run("head", ["ray", "start", ...], env=...)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

HOSTS = {"head": "198.18.0.1", "worker": "198.18.0.2"}
PREFIX = 30


class NamespacesUnavailable(RuntimeError):
    """This machine does not let the test create network namespaces (not root, or a sandbox without netns)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def namespaces_available() -> bool:
    """Whether this machine lets a test create the two hosts (tried: created and removed at once)."""
    try:
        TwoHosts().__enter__().__exit__(None, None, None)
    except NamespacesUnavailable:
        return False
    return True


class TwoHosts:
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.namespaces = {name: f"etr-{name[0]}-{tag}" for name in HOSTS}
        self.interfaces = {name: f"etr{name[0]}{tag}" for name in HOSTS}  # <= 15 characters
        self.addresses = dict(HOSTS)
        self._created: list[str] = []

    def __enter__(self) -> "TwoHosts":
        try:
            _ip("netns", "add", self.namespaces["head"])
        except (RuntimeError, FileNotFoundError) as error:
            raise NamespacesUnavailable(str(error)) from error
        self._created.append(self.namespaces["head"])
        try:
            _ip("netns", "add", self.namespaces["worker"])
            self._created.append(self.namespaces["worker"])
            head_if, worker_if = self.interfaces["head"], self.interfaces["worker"]
            _ip("link", "add", head_if, "netns", self.namespaces["head"], "type", "veth", "peer", "name", worker_if,
                "netns", self.namespaces["worker"])
            for name in HOSTS:
                ns, interface = self.namespaces[name], self.interfaces[name]
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{self.addresses[name]}/{PREFIX}", "dev", interface)
                _ip("-n", ns, "link", "set", interface, "up")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def run(self, host: str, argv: list[str], env: dict, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(host, argv), env=env, capture_output=True, text=True, timeout=timeout,
                              **kwargs)

    def pids(self, host: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespaces[host]], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop_processes(self, host: str, grace_s: float = 10, first_signal: int = signal.SIGTERM) -> None:
        """``first_signal`` (SIGTERM), then SIGKILL after ``grace_s``, to every process in ``host``'s namespace (all
        started by the test: nothing else runs there)."""
        for sig, wait in ((first_signal, grace_s), (signal.SIGKILL, 5)):
            pids = self.pids(host)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids(host) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not self.pids(host):
                return

    def kill_processes(self, host: str) -> None:
        """SIGKILL every process in ``host``'s namespace at once, as if the host lost power (bounded wait)."""
        self.stop_processes(host, grace_s=0, first_signal=signal.SIGKILL)

    def __exit__(self, *exc) -> None:
        for host, ns in self.namespaces.items():
            if ns in self._created:
                self.stop_processes(host)
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)  # removes the veth too
        self._created.clear()
