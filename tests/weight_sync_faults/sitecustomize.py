"""Fault injection for tests/test_vllm_weight_sync.py: put this directory on PYTHONPATH and set
ETR_TEST_WEIGHT_SYNC_FAULT in the run's environment; every Python process of the run (Ray's workers, vLLM's engine
and worker) imports this at start. When verl's vLLM worker extension is imported, its weight loading is replaced:

- ``skip_after=N``: the first N weight updates load, later ones are dropped (the rollout keeps stale weights);
- ``raise``: every update raises, as a broken sync does.

Nothing of the project imports this; it exists so that the weight-sync test is shown to fail without the sync."""

import importlib.abc
import importlib.util
import os
import sys

FAULT = os.environ.get("ETR_TEST_WEIGHT_SYNC_FAULT", "")
TARGET = "verl.workers.rollout.vllm_rollout.utils"


def _inject(module) -> None:
    extension = module.vLLMColocateWorkerExtension
    original = extension._update_weights
    calls = {"n": 0}

    def _update_weights(self, weights, *args, **kwargs):
        calls["n"] += 1
        if FAULT == "raise":
            raise RuntimeError("ETR_TEST_WEIGHT_SYNC_FAULT=raise: this weight update was broken on purpose")
        if FAULT.startswith("skip_after=") and calls["n"] > int(FAULT.split("=", 1)[1]):
            for _ in weights:  # consume the bucket as a real load would, then drop it
                pass
            return None
        return original(self, weights, *args, **kwargs)

    extension._update_weights = _update_weights


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        exec_module = spec.loader.exec_module

        def exec_and_inject(module):
            exec_module(module)
            _inject(module)

        spec.loader.exec_module = exec_and_inject
        return spec


if FAULT:
    sys.meta_path.insert(0, _Finder())
