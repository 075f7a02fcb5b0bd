"""The demo's summary names the rollout engine that served the runs, read from the runs' own logs."""

from __future__ import annotations

import pytest

from etr_verl.demo.report import rollout_engine

# not run on the other verl releases by `make test-versions`: the demo's report from saved metrics
pytestmark = pytest.mark.verl_independent


def test_the_engine_is_read_from_the_ray_actor_that_generated():
    assert rollout_engine("(HFGenerationServer pid=1) ready").startswith("transformers (etr-verl's hf replica")
    assert rollout_engine("no server here").startswith("unknown")


def test_a_vllm_run_names_vllm_and_its_version():
    metadata = pytest.importorskip("importlib.metadata")
    try:
        version = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        pytest.skip("no vLLM in this venv (make install sets it up on the primary verl)")
    assert rollout_engine("(vLLMHttpServer pid=7) ['serve', ...]").startswith(f"vLLM {version} (verl's vLLM rollout")
