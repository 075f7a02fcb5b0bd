"""`recipes/submit.sh`, run for real: an ETR job submitted with `ray job submit` to a live two-node Ray cluster on
loopback (each node one logical GPU, the local CPU backend, the tiny local task), followed to success with Ray's own
job CLI. Two FSDP ranks on two nodes, ETR's exact macro signal, a checkpoint per rank, every listener on loopback.

The cluster is Ray's own multi-node test harness (`ray.cluster_utils.Cluster`: a head with the job server and a
worker node, each a raylet of its own), started from the venv as a user starts `ray start` from an activated venv,
with a private temp dir (a later plain `ray.init()` of another program must not find it). ~2 minutes.

Where network namespaces can be created, tests/test_two_hosts_submit.py runs the same submission across two
emulated hosts (and more: a lost node, a resumed job); this loopback cluster is then skipped, as a copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest
from etr_testkit import LOOPBACK, ListenerWatch, local_overrides, recipe_task, user_env
from two_hosts import namespaces_available

from etr_verl.demo.report import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "recipes" / "submit.sh"
EXPERIMENT = "qwen2_5_math_7b_dapo17k"
VENV_BIN = Path(sys.executable).parent  # this venv (not resolved: its python is a link to the base one)
JOB_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackCluster:
    """Two Ray nodes on this machine (head + worker), 1 logical GPU each, the job server on 127.0.0.1."""

    def __init__(self):
        import ray.cluster_utils

        self.dashboard_port = _free_port()
        self.cluster = ray.cluster_utils.Cluster(
            initialize_head=True,
            head_node_args=dict(num_cpus=8, num_gpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
                                dashboard_port=self.dashboard_port, node_ip_address="127.0.0.1"),
        )
        self.worker = self.cluster.add_node(num_cpus=8, num_gpus=1, node_ip_address="127.0.0.1")
        self.cluster.wait_for_nodes()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self._wait_for_job_server()

    def _wait_for_job_server(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.address + "/api/version", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def node_ids(self) -> dict[str, str]:
        return {"head": self.cluster.head_node.node_id, "worker": self.worker.node_id}

    def shutdown(self) -> None:
        """Stop both nodes, then any process still running from this cluster's private temp dir (by PID)."""
        import psutil

        try:
            self.cluster.shutdown()
        finally:
            temp_dir = os.environ["RAY_TMPDIR"]
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if proc.pid != os.getpid() and temp_dir in " ".join(proc.info["cmdline"] or []):
                    proc.kill()


def ray_cli(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def follow_job(job_id: str, env: dict, timeout: float) -> str:
    """Poll `ray job status` until the job ends (bounded); returns its final status line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ray_cli("job", "status", job_id, env=env).stdout
        if re.search(r"\b(succeeded|failed|stopped)\b", status, re.IGNORECASE):
            return status
        time.sleep(3)
    ray_cli("job", "stop", job_id, env=env)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    if namespaces_available():
        pytest.skip("tests/test_two_hosts_submit.py submits the same job across two emulated hosts on this machine")
    out = tmp_path_factory.mktemp("cluster")
    task = recipe_task(tmp_path_factory)
    temp_dir = tempfile.mkdtemp(prefix="etr-ray-", dir="/tmp")  # short: Ray's AF_UNIX socket paths <= 107 bytes
    saved = {k: os.environ.get(k) for k in ("PATH", "RAY_TMPDIR")}
    os.environ["PATH"] = f"{VENV_BIN}:{saved['PATH']}"  # the nodes start from the activated venv, as documented
    os.environ["RAY_TMPDIR"] = temp_dir  # the cluster's sessions and its address file, private to this test
    watch = ListenerWatch()
    cluster = None
    try:
        cluster = LoopbackCluster()
        watch.start(os.getpid())
        metrics = out / "logs" / "train.jsonl"
        env = user_env(RAY_ADDRESS=cluster.address, VERL_FILE_LOGGER_PATH=str(metrics),
                       PATH=os.environ["PATH"])
        env.pop("PYTHON")  # the job resolves the interpreter on the node, from the activated venv
        submit = subprocess.run(
            ["bash", str(SUBMIT), EXPERIMENT, "algo=etr", "trainer.nnodes=2", "trainer.n_gpus_per_node=1",
             *local_overrides(task, out), "data.train_batch_size=8", "actor_rollout_ref.rollout.n=4",
             "actor_rollout_ref.actor.ppo_mini_batch_size=4", "trainer.total_training_steps=1",
             "trainer.save_freq=1", "trainer.test_freq=-1", "trainer.val_before_train=false"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        job_id = re.search(r"raysubmit_\w+", submit.stdout + submit.stderr).group(0)
        status = follow_job(job_id, env, JOB_TIMEOUT_S)
        logs = ray_cli("job", "logs", job_id, env=env).stdout
        actors = json.loads(ray_cli("list", "actors", "--detail", "--format", "json", "--limit", "10000",
                                    env=env).stdout)
        nodes = cluster.node_ids()
    finally:
        addresses = watch.stop()
        if cluster is not None:
            cluster.shutdown()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        shutil.rmtree(temp_dir, ignore_errors=True)
    (out / "job.log").write_text(logs)
    (out / "actors.json").write_text(json.dumps(actors, indent=1))
    return dict(out=out, status=status, logs=logs, metrics=metrics, nodes=nodes, addresses=addresses, actors=actors)


def test_the_submitted_etr_job_succeeds(submitted):
    assert re.search(r"\bsucceeded\b", submitted["status"], re.IGNORECASE), submitted["status"] + submitted["logs"][-5000:]
    rows = read_metrics(submitted["metrics"])
    step = {r["step"]: r for r in rows}
    assert step[1]["actor/etr/macro_from_driver"] == 1.0  # ETR's exact macro signal, across two ranks
    assert step[1]["actor/grad_norm"] > 0


def test_two_fsdp_ranks_ran_on_two_nodes(submitted):
    """verl's FSDP worker actors (WorkerDict, one per rank), read from Ray's state API: one on each node."""
    workers = [a for a in submitted["actors"] if a["class_name"].endswith("WorkerDict")]
    assert len(workers) == 2, [a["class_name"] for a in submitted["actors"]]
    assert {a["node_id"] for a in workers} == set(submitted["nodes"].values())
    run_dir = submitted["out"] / "ckpts" / "etr-reproduction" / "qwen2.5-math-7b-dapo17k-etr" / "global_step_1"
    shards = sorted(p.name for p in (run_dir / "actor").glob("model_world_size_2_rank_*.pt"))
    assert shards == ["model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"], \
        sorted(p.name for p in (run_dir / "actor").iterdir())


def test_the_cluster_listened_on_loopback_only(submitted):
    addresses = submitted["addresses"]
    assert addresses and all(LOOPBACK.match(a) for a in addresses), addresses
