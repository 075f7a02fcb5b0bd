#!/usr/bin/env bash
# Submit one of the paper's experiments to a Ray cluster with `ray job submit` (docs/recipes.md, section 3).
#
#   export RAY_ADDRESS=http://HEAD:8265      # the cluster's job server
#   bash recipes/submit.sh EXPERIMENT [Hydra overrides...] [--dry-run]
#   bash recipes/submit.sh qwen3_8b_base_dapo17k algo=etr profile=4x8 paths.data_dir=/shared/data/etr
#   bash recipes/submit.sh qwen3_8b_base_dapo17k algo=etr --dry-run   # the submit command and resolved config only
#
# Here, before anything is sent: the verl pin, the config composed and validated by `etr_verl.main --dry-run` (a bad
# override fails in seconds, not on the cluster), and the job server answering. On the cluster the job runs
# `bash recipes/train.sh EXPERIMENT overrides...` in this checkout, uploaded as the working directory, with
# recipes/runtime_env.yaml plus the secrets and settings listed in etr_verl/ray_runtime_env.py (FORWARDED_SECRETS:
# WANDB_API_KEY, HF_TOKEN; FORWARDED_SETTINGS: the loggers' paths and W&B's entity and mode), read from this
# shell's environment (never from a file of the repository or a command-line flag): a variable exported here reaches
# the job only through those lists, the same ones a run started on a node of a running cluster forwards.
# SUBMIT_WAIT=1 follows the job's logs (default: --no-wait).
set -euo pipefail
# shellcheck source=recipes/common/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/common/lib.sh"

etr_parse_command_line "$@"
[[ -n "${RAY_ADDRESS:-}" ]] ||
  etr_fail "RAY_ADDRESS is not set: export the cluster's job server (e.g. RAY_ADDRESS=http://HEAD:8265); to run on this node use recipes/train.sh"
etr_check_verl_pin

# the ray CLI: on PATH, or beside PYTHON (a venv that is not activated)
ray_cli=$(command -v ray 2>/dev/null || true)
if [[ -z "$ray_cli" && -x "$(dirname "$(command -v "$PYTHON")")/ray" ]]; then ray_cli="$(dirname "$(command -v "$PYTHON")")/ray"; fi
[[ -n "$ray_cli" ]] ||
  etr_fail "the ray CLI is found neither on PATH nor beside PYTHON=$PYTHON; activate the environment where etr-verl is installed, or set PYTHON to its interpreter"

# recipes/runtime_env.yaml + working_dir + the secrets and settings that are set, in a file only this user can read
# (removed on exit)
runtime_env=$(mktemp -t etr-runtime-env.XXXXXX.yaml)
trap 'rm -f "$runtime_env"' EXIT
"$PYTHON" - "$ETR_REPO_ROOT" "$runtime_env" <<'PY'
import json, os, sys
import yaml
from etr_verl.ray_runtime_env import FORWARDED_SECRETS, forwarded_env_vars

root, out = sys.argv[1], sys.argv[2]
env = yaml.safe_load(open(os.path.join(root, "recipes", "runtime_env.yaml")))
env["working_dir"] = root
env["env_vars"] = env.get("env_vars") or {}
env["env_vars"].update(forwarded_env_vars())
with open(out, "w") as handle:
    json.dump(env, handle)
shown = {**env, "env_vars": {k: ("<from the environment>" if k in FORWARDED_SECRETS else v)
                             for k, v in env["env_vars"].items()}}
print("[etr-recipe] runtime env: " + json.dumps(shown), file=sys.stderr)
PY

wait_flag=(--no-wait)
[[ "${SUBMIT_WAIT:-0}" == 1 ]] && wait_flag=()
job=("$ray_cli" job submit --address "$RAY_ADDRESS" --runtime-env "$runtime_env" "${wait_flag[@]}"
  -- bash recipes/train.sh "$ETR_EXPERIMENT" "${ETR_OVERRIDES[@]}")
etr_train_command
if [[ "$ETR_DRY_RUN" == 1 ]]; then
  echo "# etr-recipe dry run. Would submit:"
  printf '%q ' "${job[@]}"
  echo
  "${ETR_TRAIN_COMMAND[@]}" --dry-run  # not exec: the EXIT trap removes the runtime env file
  exit 0
fi
"${ETR_TRAIN_COMMAND[@]}" --dry-run >/dev/null ||
  etr_fail "the config does not pass etr_verl.main's checks (above); nothing was submitted"
"$PYTHON" "$ETR_REPO_ROOT/recipes/common/job_server.py" "$RAY_ADDRESS" || exit 2  # answers, accepts our token
echo "[etr-recipe] $(printf '%q ' "${job[@]}")" >&2
# A head that has just started may have no job agent yet: Ray's job server then answers "No available agent to
# submit job, please try again later" (after waiting 10 s itself) and no job exists. Retry that answer only, 6 times.
submit_log=$(mktemp -t etr-submit.XXXXXX.log)
trap 'rm -f "$runtime_env" "$submit_log"' EXIT
for attempt in 1 2 3 4 5 6; do
  if "${job[@]}" 2>&1 | tee "$submit_log"; then exit 0; fi
  grep -q "No available agent to submit job" "$submit_log" || exit 1
  echo "[etr-recipe] the job server has no job agent yet (attempt $attempt of 6); retrying in 5 s" >&2
  sleep 5
done
etr_fail "the job server at RAY_ADDRESS=$RAY_ADDRESS still has no job agent: check the head node (ray status; its dashboard_agent log)"
