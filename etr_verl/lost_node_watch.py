"""End a run in bounded time, with its cause, when a Ray node that holds the run's workers is lost.

verl does not restart its workers when their node dies, and some of its waits have no liveness check: the V1
trainer's replay buffer polls TransferQueue for rollouts that a lost agent-loop worker or rollout server will never
finish (``verl/trainer/ppo/v1/replay_buffer.py``, ``sample``: seen to wait without end), and a surviving FSDP rank
waits in a collective until the process group's timeout (30 minutes). Ray itself marks a lost node dead within
about 30 s (missed heartbeats). This watch, a thread in the driver, reads Ray's node table and the run's placement
groups every few seconds; when a node that held a bundle of one of them is dead it prints the cause and the fix,
interrupts the driver's wait (``KeyboardInterrupt`` in the main thread, which Ray's ``ray.get`` checks for), and,
should the driver not end within :data:`EXIT_GRACE_S`, ends the process. The run's placement groups are those of
this Ray job: a placement group's id ends with the id of the job that created it (Ray's ID specification).

Placement groups hold verl's worker groups (the FSDP actor, reference, critic, and the rollout servers placed with
them); an actor outside them (the task runner, on a node of its own) fails the run through Ray's own
``ActorDiedError`` instead.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time

POLL_S = 5.0
EXIT_GRACE_S = 60.0


class LostNodeWatch:
    """``with LostNodeWatch() as watch: run()``; after a ``KeyboardInterrupt``, ``watch.lost`` says whether it was
    ours (the message to print) or the user's (None)."""

    def __init__(self, poll_s: float = POLL_S, exit_grace_s: float = EXIT_GRACE_S):
        self.poll_s, self.exit_grace_s = poll_s, exit_grace_s
        self.lost: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="etr-lost-node-watch", daemon=True)
        self._held: dict[str, str] = {}  # node id -> its address, for every node that held a bundle of this run
        self._sigint_before = None  # SIGINT's disposition where the watch replaced it (see __enter__)

    def __enter__(self) -> "LostNodeWatch":
        # interrupt_main() simulates SIGINT, and Python acts on it only where SIGINT has a Python handler. A driver
        # started in the background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and Python
        # then installs none: the interrupt did nothing, and the grace's os._exit ended the run without its clean-up
        # (seen in a local CI run). For the watch's lifetime such a process gets a handler that raises
        # KeyboardInterrupt for the watch's interrupt only; a real SIGINT keeps its old effect.
        if threading.current_thread() is threading.main_thread():
            before = signal.getsignal(signal.SIGINT)
            if before in (signal.SIG_IGN, signal.SIG_DFL):
                self._sigint_before = before
                signal.signal(signal.SIGINT, self._on_sigint)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._sigint_before is not None:
            signal.signal(signal.SIGINT, self._sigint_before)
            self._sigint_before = None

    def _on_sigint(self, signum, frame) -> None:
        if self.lost:  # the watch's own interrupt
            raise KeyboardInterrupt
        if self._sigint_before == signal.SIG_DFL:  # a real SIGINT, whose default action ends the process
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        # ignored before the watch: still ignored

    def _watch(self) -> None:
        import ray

        while not self._done.wait(self.poll_s):
            if not ray.is_initialized():
                continue
            try:
                self.lost = self.check()
            except Exception:  # noqa: BLE001 — Ray shutting down under us, or the GCS briefly away: look again
                continue
            if self.lost:
                break
        if not self.lost:
            return
        print(f"[etr-verl] error: {self.lost}", file=sys.stderr, flush=True)
        _thread.interrupt_main()
        if not self._done.wait(self.exit_grace_s):
            print(f"[etr-verl] the driver did not end within {self.exit_grace_s:.0f} s of the lost node: exiting",
                  file=sys.stderr, flush=True)
            os._exit(1)

    def check(self) -> str | None:
        """The cause, if a node that held a bundle of this run's placement groups is dead; else None."""
        import ray
        from ray.util.placement_group import placement_group_table

        job_id = ray.get_runtime_context().get_job_id()
        nodes = {node["NodeID"]: node for node in ray.nodes()}
        for group_id, group in placement_group_table().items():
            if group_id.endswith(job_id):
                for node_id in group["bundles_to_node_id"].values():
                    if node_id in nodes:  # a bundle being rescheduled has no node (zeros)
                        self._held.setdefault(node_id, nodes[node_id]["NodeManagerAddress"])
        for node_id, address in self._held.items():
            node = nodes.get(node_id)
            if node is not None and not node["Alive"]:
                reason = (node.get("DeathReasonMessage") or "no reason recorded").strip().splitlines()[0]
                return (f"Ray node {node_id[:12]} at {address}, which held this run's workers, is dead ({reason}). "
                        "verl does not restart lost workers, so the run stops here. Bring the node back (or add "
                        "one), then run the same command again: trainer.resume_mode=auto continues from the last "
                        "checkpoint.")
        return None
