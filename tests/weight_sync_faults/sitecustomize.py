"""Fault injection for tests/test_vllm_weight_sync.py: put this directory on PYTHONPATH and set
ETR_TEST_WEIGHT_SYNC_FAULT in the run's environment; every Python process of the run (Ray's workers, vLLM's engine
and worker) imports this at start. When verl's vLLM worker extension is imported, its weight loading is replaced:

- ``skip_after=N``: the first N weight updates load, later ones are dropped (the rollout keeps stale weights);
- ``raise_from=M``: update M and every later one raise, as a broken sync does;

both at once, comma-separated (``skip_after=1,raise_from=4``). verl syncs before step 1's rollout, then after each
step's update.

Nothing of the project imports this; it exists so that the weight-sync test is shown to fail without the sync."""

import importlib.abc
import importlib.util
import os
import sys

FAULT = dict(item.split("=", 1) for item in os.environ.get("ETR_TEST_WEIGHT_SYNC_FAULT", "").split(",") if item)
TARGET = "verl.workers.rollout.vllm_rollout.utils"


def _inject(module) -> None:
    extension = module.vLLMColocateWorkerExtension
    original = extension._update_weights
    calls = {"n": 0}

    def _update_weights(self, weights, *args, **kwargs):
        calls["n"] += 1
        if "raise_from" in FAULT and calls["n"] >= int(FAULT["raise_from"]):
            raise RuntimeError(f"ETR_TEST_WEIGHT_SYNC_FAULT: update {calls['n']}: this weight update was broken on "
                               "purpose")
        if "skip_after" in FAULT and calls["n"] > int(FAULT["skip_after"]):
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
