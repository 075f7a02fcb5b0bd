"""Issue 31 item 5: settings and secrets exported in the shell of a driver that joins a running Ray cluster
(``recipes/eval/evaluate_checkpoint.sh`` on a node where ``ray start`` ran) reach the job's workers, as they reach a
job submitted with ``recipes/submit.sh``; a secret is never printed. Live: a Ray head on loopback started the way
``ray start --head`` starts one (a private temp dir), and a driver process with the shell's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
from etr_testkit import user_env
from omegaconf import OmegaConf

from etr_verl.ray_runtime_env import JOB_CONFIG_ENV, forward_to_joined_cluster, forwarded_env_vars

pytestmark = [pytest.mark.ray, pytest.mark.verl_independent]

SHELL = {"VERL_FILE_LOGGER_PATH": "/shared/eval/metrics.jsonl", "WANDB_API_KEY": "secret-0123456789",
         "WANDB_MODE": "offline"}

# the driver: etr_verl.main's order (forward, then verl's ray.init with the trainer config's runtime env), then a task
# on the cluster that reports its environment
DRIVER = textwrap.dedent("""
    import json, os, sys
    from omegaconf import OmegaConf
    import ray
    from etr_verl.ray_runtime_env import forward_to_joined_cluster
    config = OmegaConf.create({"ray_kwargs": {"ray_init": {"address": sys.argv[1], "runtime_env": {
        "env_vars": {"VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}}}}})
    print("forwarded:", forward_to_joined_cluster(config))
    ray.init(**OmegaConf.to_container(config.ray_kwargs.ray_init))

    @ray.remote
    def environment():
        return {k: os.environ.get(k) for k in %r}

    print("worker:", json.dumps(ray.get(environment.remote())))
""") % (sorted([*SHELL, "VERL_USE_EXTERNAL_MODULES"]),)


def test_a_run_started_from_a_shell_on_a_running_cluster_forwards_the_shell_settings():
    import ray.cluster_utils

    temp_dir = tempfile.mkdtemp(prefix="etr-ray-", dir="/tmp")  # short: Ray's AF_UNIX socket paths <= 107 bytes
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    cluster = None
    try:
        # the raylet's environment is this process's: none of the shell's settings below; the driver keeps Ray on
        # loopback as etr_verl.main does for a local run (in cluster mode Ray swaps 127.0.0.1 for the host's address)
        cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=1, include_dashboard=False, node_ip_address="127.0.0.1"))
        driver = subprocess.run([sys.executable, "-c", DRIVER, cluster.address], capture_output=True, text=True,
                                timeout=180, env=user_env(RAY_TMPDIR=temp_dir, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **SHELL))
    finally:
        if cluster is not None:
            cluster.shutdown()
        os.environ.pop("RAY_TMPDIR") if saved is None else os.environ.__setitem__("RAY_TMPDIR", saved)
        subprocess.run(["rm", "-rf", temp_dir], check=False)
    output = driver.stdout + driver.stderr
    assert driver.returncode == 0, output[-4000:]
    assert "forwarded: ['VERL_FILE_LOGGER_PATH', 'WANDB_API_KEY', 'WANDB_MODE']" in output
    worker = json.loads(output.split("worker: ", 1)[1].splitlines()[0])
    assert worker == {**SHELL, "VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin"}  # the shell's and the config's
    assert SHELL["WANDB_API_KEY"] not in output.replace(json.dumps(worker), ""), "the secret was printed"


def test_only_a_driver_that_joins_a_cluster_from_a_shell_forwards(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` address file of this machine is found
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    own_cluster = OmegaConf.create({"ray_kwargs": {"ray_init": {}}})
    environ = dict(SHELL)
    assert forward_to_joined_cluster(own_cluster, environ) == [] and JOB_CONFIG_ENV not in environ
    joined = OmegaConf.create({"ray_kwargs": {"ray_init": {"address": "127.0.0.1:6379"}}})
    submitted = {**SHELL, JOB_CONFIG_ENV: json.dumps({"runtime_env": {"env_vars": {"WANDB_MODE": "offline"}}})}
    assert forward_to_joined_cluster(joined, submitted) == []  # ray job submit's runtime env already carries them
    assert forward_to_joined_cluster(joined, environ) == sorted(SHELL)
    assert json.loads(environ[JOB_CONFIG_ENV]) == {"runtime_env": {"env_vars": forwarded_env_vars(SHELL)}}

