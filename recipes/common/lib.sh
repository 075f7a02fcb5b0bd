# shellcheck shell=bash
# shellcheck disable=SC2034  # ETR_* variables are read by the scripts that source this file
# Shared by recipes/train.sh, recipes/submit.sh and recipes/eval/evaluate_checkpoint.sh (sourced, not run): the
# repository root, the interpreter, the command line (an experiment, Hydra overrides, --dry-run) and the verl pin.
# No hyperparameter lives here: they are all in hydra_configs/.

ETR_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}  # the interpreter with etr-verl installed
# the launchers run the experiment configs that travel with them (this checkout, the image, the uploaded job)
export ETR_VERL_HYDRA_CONFIGS="$ETR_REPO_ROOT/hydra_configs"

etr_fail() {
  echo "[etr-recipe] error: $*" >&2
  exit 2
}

etr_experiments() {
  local file names=""
  for file in "$ETR_VERL_HYDRA_CONFIGS"/experiment/*.yaml; do names+="${names:+, }$(basename "$file" .yaml)"; done
  printf '%s' "$names"
}

# etr_usage_if_asked "$@": -h/--help as the first argument prints the script's header comment (its usage) and the
# experiments, and exits
etr_usage_if_asked() {
  if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'
    echo "experiments: $(etr_experiments)"
    exit 0
  fi
}

# etr_parse_command_line "$@": ETR_EXPERIMENT (the first argument), ETR_OVERRIDES (the Hydra overrides), ETR_DRY_RUN
# (--dry-run anywhere, or DRY_RUN=1).
etr_parse_command_line() {
  local arg
  etr_usage_if_asked "$@"
  ETR_EXPERIMENT=${1:-}
  ETR_DRY_RUN=${DRY_RUN:-0}
  ETR_OVERRIDES=()
  [[ -n "$ETR_EXPERIMENT" && "$ETR_EXPERIMENT" != *=* && "$ETR_EXPERIMENT" != -* ]] ||
    etr_fail "name the experiment first: $(basename "$0") EXPERIMENT [Hydra overrides...] [--dry-run]; experiments: $(etr_experiments)"
  [[ -f "$ETR_VERL_HYDRA_CONFIGS/experiment/$ETR_EXPERIMENT.yaml" ]] ||
    etr_fail "no experiment '$ETR_EXPERIMENT' in hydra_configs/experiment/; experiments: $(etr_experiments)"
  shift
  for arg in "$@"; do
    if [[ "$arg" == --dry-run ]]; then ETR_DRY_RUN=1; else ETR_OVERRIDES+=("$arg"); fi
  done
  command -v "$PYTHON" >/dev/null || etr_fail "PYTHON=$PYTHON is not an interpreter on PATH; set PYTHON to the one with etr-verl installed"
}

# the verl of this environment is the one recipes/REQUIRED_VERL.txt pins (names both and the install line if not)
etr_check_verl_pin() {
  "$PYTHON" "$ETR_REPO_ROOT/recipes/common/verl_pin.py" || exit 2
}

# etr_train_command: the local training command of the parsed command line, in ETR_TRAIN_COMMAND
etr_train_command() {
  ETR_TRAIN_COMMAND=("$PYTHON" -m etr_verl.main "experiment=$ETR_EXPERIMENT" "${ETR_OVERRIDES[@]}")
}
