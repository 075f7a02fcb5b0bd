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


def test_the_demo_runs_its_algorithms_side_by_side_and_reports_a_failure_after_all_end(capsys):
    """``make demo`` runs GRPO and ETR at once (their start-ups overlap): both runs start before either ends, each
    line is prefixed with its algorithm, and one run's failure is raised only once the other has finished."""
    import threading
    import time

    from etr_verl.demo.__main__ import run_concurrently

    events, lock = [], threading.Lock()

    def fake_run(name, fail, echo):
        with lock:
            events.append(("start", name))
        time.sleep(0.3)
        echo("    step 1: reward 0.5")
        with lock:
            events.append(("end", name))
        if fail:
            raise ValueError(f"{name} broke")

    with pytest.raises(RuntimeError, match="the grpo run failed") as raised:
        run_concurrently({"grpo": ("grpo", True), "etr": ("etr", False)}, runner=fake_run)
    assert isinstance(raised.value.__cause__, ValueError)
    assert [kind for kind, _ in events[:2]] == ["start", "start"] and len(events) == 4  # overlapped, both ended
    printed = capsys.readouterr().out.splitlines()
    assert sorted(printed) == ["[etr] step 1: reward 0.5", "[grpo] step 1: reward 0.5"]


def test_runs_side_by_side_share_the_cpus_unless_the_caller_set_the_threads(monkeypatch):
    """Each run's actor gets OMP_NUM_THREADS: the machine's CPUs divided among the runs that go at once (at least
    one), or the caller's own setting as it is."""
    import os

    from etr_verl.demo.__main__ import threads_per_run

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert threads_per_run(1) == {"OMP_NUM_THREADS": str(cpus)}
    assert threads_per_run(2) == {"OMP_NUM_THREADS": str(max(1, cpus // 2))}
    assert threads_per_run(cpus + 1) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads_per_run(2) == {"OMP_NUM_THREADS": "5"}


def test_the_watch_page_checks_what_docs_watching_md_lists(tmp_path):
    """`python -m etr_verl.demo.watch`: a healthy run passes its three checks (exit 0) and gets its page; a run
    without the exact macro signal or with no clipping fails the one that says so (exit 1)."""
    import json
    import subprocess
    import sys

    def write(path, driver, clipfrac):
        keys = {"factor_mean": 0.8, "factor_min": 0.5, "factor_max": 1.6, "eps_low_mean": 0.16, "eps_low_min": 0.1,
                "eps_low_max": 0.32, "eps_high_mean": 0.16, "eps_high_min": 0.1, "eps_high_max": 0.32,
                "pg_clipfrac_adv_pos": clipfrac / 2, "pg_clipfrac_adv_neg": clipfrac / 2, "macro_from_driver": driver,
                "zero_variance_share": 0.1}
        rows = [{"step": step, "data": {**{f"actor/etr/{k}": v for k, v in keys.items()},
                                        "actor/pg_clipfrac": clipfrac, "actor/entropy": 0.3,
                                        "critic/returns/mean": 0.6}} for step in (1, 2)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return subprocess.run([sys.executable, "-m", "etr_verl.demo.watch", str(path)], capture_output=True,
                              text=True, timeout=120)

    healthy = write(tmp_path / "healthy.jsonl", driver=1.0, clipfrac=0.01)
    assert healthy.returncode == 0 and healthy.stdout.count("ok    ") == 3, healthy.stdout + healthy.stderr
    assert (tmp_path / "healthy.watch.png").stat().st_size > 10_000
    fallback = write(tmp_path / "fallback.jsonl", driver=0.0, clipfrac=0.0)
    assert fallback.returncode == 1
    assert "CHECK actor/etr/macro_from_driver = 1" in fallback.stdout and "CHECK actor/pg_clipfrac > 0" in fallback.stdout
