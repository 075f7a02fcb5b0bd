"""`recipes/submit.sh` across two hosts, with a lost node: the cluster of docs/recipes.md section 3, started with its
own commands on two emulated hosts (network namespaces with addresses of their own, tests/two_hosts.py), token auth
on as on a real cluster.

1. Submitting without the head's token fails at once with one line naming the fix.
2. With the token, an ETR job runs on workers at both addresses; once it has written a checkpoint, the worker host
   is lost (every process in its namespace killed): the job ends FAILED within a bound, its cause in the job logs.
3. The worker host comes back (the docs' `ray start`), the same submit command resumes (`trainer.resume_mode=auto`):
   the run continues at the step after its last checkpoint, with the prompts an uninterrupted run would have drawn
   (verl's own sampler, reconstructed here) and ETR's exact macro signal; it ends SUCCEEDED.
4. Nothing is left: no process, namespace or /dev/shm entry.

Skipped, with the reason, where network namespaces cannot be created. About 10 minutes here: two two-node start-ups
of 4-6 minutes each."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from etr_testkit import local_overrides, recipe_task, user_env
from two_hosts import NamespacesUnavailable, TwoHosts

from etr_verl.demo.report import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "recipes" / "submit.sh"
EXPERIMENT = "qwen2_5_math_7b_dapo17k"
VENV_BIN = Path(sys.executable).parent
TOTAL_STEPS, BATCH = 3, 8  # the resumed job runs 1 or 2 steps: enough to see the order go on
FAILED_WITHIN_S = 180  # from the lost host to the job's FAILED status
RUN_NAME = "qwen2.5-math-7b-dapo17k-etr"


class NamespacedCluster:
    """The docs' head and worker commands, each host with its own home (its ~/.ray/auth_token) and temp dir."""

    def __init__(self, hosts: TwoHosts, root: Path):
        self.hosts, self.root = hosts, root
        self.head_ip, self.worker_ip = hosts.addresses["head"], hosts.addresses["worker"]
        self.homes = {name: root / f"home-{name}" for name in ("head", "worker", "submitter")}
        for home in self.homes.values():
            home.mkdir(parents=True)
        self.temp_dirs = {name: tempfile.mkdtemp(prefix=f"etr-{name[0]}-", dir="/tmp") for name in ("head", "worker")}

    def node_env(self, host: str) -> dict[str, str]:
        """A node's shell: the venv activated, Ray's token auth, and the CPU backend allowed the two addresses."""
        env = user_env(HOME=str(self.homes[host]), PATH=f"{VENV_BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token",
                       RAY_TMPDIR=self.temp_dirs[host], ETR_LOCAL_CPU_HOSTS=f"{self.head_ip},{self.worker_ip}")
        env.pop("PYTHON")
        return env

    def ray(self, host: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = self.hosts.run(host, ["ray", *args], env=self.node_env(host), timeout=timeout)
        assert result.returncode == 0, f"ray {' '.join(args)} on {host}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result

    def start_head(self) -> None:
        self.ray("head", "get-auth-token", "--generate")
        # --num-cpus/--num-gpus: this machine has no GPU; each node offers one logical GPU for one FSDP rank
        self.ray("head", "start", "--head", f"--node-ip-address={self.head_ip}", "--port=6379",
                 f"--dashboard-host={self.head_ip}", "--dashboard-port=8265", "--num-cpus=8", "--num-gpus=1")

    def start_worker(self) -> None:
        token = self.homes["head"] / ".ray" / "auth_token"
        (self.homes["worker"] / ".ray").mkdir(exist_ok=True)
        shutil.copy(token, self.homes["worker"] / ".ray" / "auth_token")  # "the head's token copied"
        self.ray("worker", "start", f"--address={self.head_ip}:6379", f"--node-ip-address={self.worker_ip}",
                 "--num-cpus=8", "--num-gpus=1")
        self.wait_for_nodes(2)

    def give_submitter_the_token(self) -> None:
        (self.homes["submitter"] / ".ray").mkdir(exist_ok=True)
        shutil.copy(self.homes["head"] / ".ray" / "auth_token", self.homes["submitter"] / ".ray" / "auth_token")

    def submitter_env(self, **extra: str) -> dict[str, str]:
        """The submitting user's shell, on the worker host: reaches the head's job server over the network."""
        env = user_env(HOME=str(self.homes["submitter"]), PATH=f"{VENV_BIN}:{os.environ['PATH']}",
                       RAY_ADDRESS=f"http://{self.head_ip}:8265", RAY_AUTH_MODE="token", **extra)
        env.pop("PYTHON")
        return env

    def submit(self, overrides: list[str], **env: str) -> subprocess.CompletedProcess:
        return self.hosts.run("worker", ["bash", str(SUBMIT), EXPERIMENT, *overrides],
                              env=self.submitter_env(**env), timeout=300, cwd=ROOT)

    def job_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.hosts.run("worker", ["ray", "job", *args], env=self.submitter_env(), timeout=timeout)

    def follow(self, job_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.job_cli("status", job_id).stdout
            if re.search(r"\b(succeeded|failed|stopped)\b", status, re.IGNORECASE):
                return status
            time.sleep(2)
        self.job_cli("stop", job_id)
        raise AssertionError(f"job {job_id} did not end within {timeout} s")

    def wait_for_nodes(self, alive: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = json.loads(self.ray("head", "list", "nodes", "--format", "json", "--limit", "100").stdout)
            if sum(n["state"] == "ALIVE" for n in nodes) >= alive:
                return
            time.sleep(2)
        raise AssertionError(f"fewer than {alive} Ray nodes alive after {timeout} s")

    def stop(self) -> None:
        """Each host's Ray stopped as `ray stop` stops it (SIGTERM, then SIGKILL after a grace), but only the
        processes in that host's namespace: `ray stop` itself stops every Ray process on the machine, which here
        includes any other Ray run beside the test (namespaces do not separate process IDs)."""
        for host in ("worker", "head"):
            self.hosts.stop_processes(host)


def _job_id(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return re.search(r"raysubmit_\w+", result.stdout + result.stderr).group(0)


def _wait_for_checkpoint(tracker: Path, cluster: NamespacedCluster, job_id: str, timeout: float = 900) -> int:
    """The step of the first checkpoint verl records (``latest_checkpointed_iteration.txt``), while the job runs.
    The bound is generous: the two-node job's start-up alone (two vLLM engines, verl's workers on both hosts, two
    CPUs) took about 6 minutes here on 2026-12-07 (submitted 14:01:45, its first update at 14:07:44)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tracker.exists() and tracker.read_text().strip():
            return int(tracker.read_text())
        status = cluster.job_cli("status", job_id).stdout
        assert not re.search(r"\b(succeeded|failed|stopped)\b", status, re.IGNORECASE), status
        time.sleep(0.5)
    logs = cluster.job_cli("logs", job_id).stdout  # the cause, before the fixture's teardown removes the logs
    raise AssertionError(f"no checkpoint within {timeout} s; the job's log ends:\n{logs[-4000:]}")


def _shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.fixture(scope="module")
def lost_node_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two-hosts")
    task = recipe_task(tmp_path_factory)
    shm_before = _shm_entries()
    hosts = TwoHosts()
    try:
        hosts.__enter__()
    except NamespacesUnavailable as error:
        pytest.skip(f"network namespaces cannot be created here: {error}")
    cluster, record = None, {"out": out, "task": task}
    try:
        cluster = NamespacedCluster(hosts, out)
        cluster.start_head()
        cluster.start_worker()
        overrides = [
            "algo=etr", "trainer.nnodes=2", "trainer.n_gpus_per_node=1", *local_overrides(task, out),
            f"data.train_batch_size={BATCH}", "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4", f"trainer.total_training_steps={TOTAL_STEPS}",
            "trainer.save_freq=1", "trainer.test_freq=-1", "trainer.val_before_train=false",
        ]
        record["overrides"] = overrides
        record["no_token"] = cluster.submit(overrides)  # the submitter has not been given the token yet

        cluster.give_submitter_the_token()
        first = _job_id(cluster.submit([*overrides, f"trainer.rollout_data_dir={out / 'rollouts-1'}"],
                                       VERL_FILE_LOGGER_PATH=str(out / "metrics-1.jsonl")))
        tracker = out / "ckpts" / "etr-reproduction" / RUN_NAME / "latest_checkpointed_iteration.txt"
        _wait_for_checkpoint(tracker, cluster, first)
        actors = json.loads(cluster.ray("head", "list", "actors", "--detail", "--format", "json",
                                        "--limit", "10000").stdout)
        nodes = json.loads(cluster.ray("head", "list", "nodes", "--format", "json", "--limit", "100").stdout)
        record["worker_node_ips"] = sorted(
            next(n["node_ip"] for n in nodes if n["node_id"] == a["node_id"])
            for a in actors if a["class_name"].endswith("WorkerDict") and a["state"] == "ALIVE")

        lost_at = time.monotonic()
        hosts.kill_processes("worker")  # the worker host is lost: raylet, its workers, the FSDP rank on it
        record["first_status"] = cluster.follow(first, timeout=FAILED_WITHIN_S + 120)
        record["failed_after_s"] = time.monotonic() - lost_at
        record["first_logs"] = cluster.job_cli("logs", first).stdout
        record["last_checkpoint"] = int(tracker.read_text())  # the step the resubmitted run must continue after
        record["shards"] = sorted(p.name for p in (tracker.parent / f"global_step_{record['last_checkpoint']}" /
                                                   "actor").glob("model_world_size_*_rank_*.pt"))

        cluster.start_worker()  # the host is back: the docs' worker command
        second = _job_id(cluster.submit([*overrides, f"trainer.rollout_data_dir={out / 'rollouts-2'}"],
                                        VERL_FILE_LOGGER_PATH=str(out / "metrics-2.jsonl")))
        record["second_status"] = cluster.follow(second, timeout=1200)  # start-up ~6 min here, then 2-3 steps
        record["second_logs"] = cluster.job_cli("logs", second).stdout
    finally:
        if cluster is not None:
            cluster.stop()
        hosts.__exit__(None, None, None)
        temp_dirs = list(cluster.temp_dirs.values()) if cluster is not None else []
        record["leftover_processes"] = _processes_mentioning(temp_dirs)
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    record["leftover_namespaces"] = [ns for ns in hosts.namespaces.values() if ns in namespaces]
    record["leftover_shm"] = sorted(_shm_entries() - shm_before)
    for key in ("first_logs", "second_logs"):
        (out / f"{key}.txt").write_text(record.get(key, ""))
    kept = {k: v for k, v in record.items() if isinstance(v, (int, float, str, list)) and not k.endswith("_logs")}
    (out / "record.json").write_text(json.dumps(kept, indent=1))
    return record


def _processes_mentioning(paths: list[str]) -> list[str]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if proc.pid != os.getpid() and any(p in line for p in paths):
            found.append(f"{proc.pid}: {line[:200]}")
    return found


def _steps_prompts(rollout_dir: Path) -> dict[int, collections.Counter]:
    """The prompts (``a+b=``) of each step's dumped rollouts (verl's ``trainer.rollout_data_dir``), one per prompt."""
    steps = {}
    for path in rollout_dir.glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        prompts = [re.findall(r"\d+\+\d+=", row["input"])[-1] for row in rows]
        steps[int(path.stem)] = collections.Counter({p: c // 4 for p, c in collections.Counter(prompts).items()})
    return steps


def _uninterrupted_order(task: dict, overrides: list[str]) -> list[str]:
    """The prompts, in the order an uninterrupted run draws them: verl's own sampler on the run's data config."""
    import pandas as pd
    from hydra import compose, initialize_config_module

    from etr_verl.experiment_configs import with_experiment_search_path
    from verl.trainer.ppo.utils import create_rl_sampler

    with initialize_config_module(config_module="etr_verl.hydra_configs", version_base=None):
        config = compose(config_name="etr_trainer",
                         overrides=with_experiment_search_path([f"experiment={EXPERIMENT}", *overrides]))
    rows = pd.read_parquet(task["train"])
    prompts = [row[0]["content"] for row in rows["prompt"]]
    return [prompts[i] for i in create_rl_sampler(config.data, prompts)]


def test_a_submitter_without_the_token_gets_one_line_naming_the_fix(lost_node_run):
    result = lost_node_run["no_token"]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("[etr-recipe] error")]
    assert len(errors) == 1 and "requires Ray's token auth and this shell has no token" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "raysubmit_" not in result.stdout + result.stderr


def test_the_job_ran_on_workers_at_both_addresses(lost_node_run):
    """verl's FSDP worker actors (WorkerDict, one per rank), read from Ray's state API: one on each host, and the
    checkpoint holds a shard of each rank."""
    assert lost_node_run["worker_node_ips"] == ["198.18.0.1", "198.18.0.2"]
    assert lost_node_run["shards"] == ["model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"]


def test_a_lost_worker_host_fails_the_job_in_bounded_time_with_its_cause(lost_node_run):
    status, logs = lost_node_run["first_status"], lost_node_run["first_logs"]
    assert re.search(r"\bfailed\b", status, re.IGNORECASE), status + logs[-3000:]
    assert lost_node_run["failed_after_s"] < FAILED_WITHIN_S, lost_node_run["failed_after_s"]
    # etr-verl's lost-node watch names the node (verl waits without end on some lost workers); or an error ended the
    # run before Ray marked the node dead: Ray's own, when the driver was calling a lost actor, or the surviving
    # FSDP rank's collective, whose gloo peer on the lost host went away mid-step (seen in CI; it names the host)
    watch = [line for line in logs.splitlines() if line.startswith("[etr-verl] error: Ray node")]
    if watch:
        assert "at 198.18.0.2, which held this run's workers, is dead" in watch[0] and "resume_mode=auto" in watch[0]
    else:
        lost_actor = re.search(r"ray\.exceptions\.Actor(Died|Unavailable)Error", logs)
        lost_peer = re.search(r"gloo.*\[198\.18\.0\.2\]:\d+: Connection (reset|closed) by peer", logs)
        assert lost_actor or lost_peer, logs[-3000:]


def test_the_resubmitted_job_resumes_at_the_next_step_with_the_same_data_order(lost_node_run):
    out, resumed_from = lost_node_run["out"], lost_node_run["last_checkpoint"]
    status = lost_node_run["second_status"]
    assert re.search(r"\bsucceeded\b", status, re.IGNORECASE), status + lost_node_run["second_logs"][-3000:]
    first = {r["step"]: r for r in read_metrics(out / "metrics-1.jsonl")}
    second = {r["step"]: r for r in read_metrics(out / "metrics-2.jsonl")}
    # verl's trainer saves a step's checkpoint before it logs the step's metrics (``_save_checkpoint``, then
    # ``logger.log``): a host lost between the two leaves the last checkpoint one step past the last logged step
    assert resumed_from - max(first) in (0, 1) and sorted(second) == list(range(resumed_from + 1, TOTAL_STEPS + 1)), \
        (sorted(first), resumed_from, sorted(second))
    assert all(row["actor/etr/macro_from_driver"] == 1.0 for row in (*first.values(), *second.values()))

    order = _uninterrupted_order(lost_node_run["task"], lost_node_run["overrides"])
    expected = {s: collections.Counter(order[(s - 1) * BATCH: s * BATCH]) for s in range(1, TOTAL_STEPS + 1)}
    before, after = _steps_prompts(out / "rollouts-1"), _steps_prompts(out / "rollouts-2")
    assert before[1] == expected[1]  # the reconstruction is verl's order (checked on the run before the loss)
    assert sorted(after) == sorted(second) and all(after[s] == expected[s] for s in after), (after, expected)


def test_nothing_is_left_behind(lost_node_run):
    assert lost_node_run["leftover_processes"] == []
    assert lost_node_run["leftover_namespaces"] == []
    assert lost_node_run["leftover_shm"] == []
