# shellcheck shell=bash
# Shared by every recipe (sourced, not run): turns a recipe's variables into verl overrides, then runs, submits
# or dry-runs `python3 -m etr_verl.main`. A recipe sets its variables, sources this file and calls
#   etr_run_recipe "$@"          # "$@": extra Hydra overrides, applied last (they win)
#
# Where it runs (from the environment):
#   RAY_ADDRESS unset            run here (single node; Ray starts a local cluster, or joins one started on this node)
#   RAY_ADDRESS=http://HEAD:8265 `ray job submit` to that cluster's job server (multi-node; docs/recipes.md)
#   DRY_RUN=1 (or --dry-run)     print the exact command and the fully resolved, validated config; run nothing
#   PYTHON                       the interpreter with etr-verl installed (default: python3)
#   SUBMIT_WAIT=1                `ray job submit` follows the job's logs instead of returning at once (--no-wait)
#   WANDB_API_KEY                read by wandb from the environment of the Ray processes only; never a flag

etr_fail() {
  echo "[etr-recipe] error: $*" >&2
  exit 2
}

# Every variable a recipe must set, checked before anything runs (names the missing one).
ETR_RECIPE_VARIABLES=(
  ALGO MODEL_PATH TRAIN_FILE TEST_FILE CKPTS_DIR PROJECT_NAME EXP_NAME NNODES GPUS_PER_NODE
  TRAIN_PROMPT_BSZ N_RESP_PER_PROMPT TRAIN_PROMPT_MINI_BSZ PPO_EPOCHS MAX_PROMPT_LENGTH MAX_RESPONSE_LENGTH
  LR LR_WARMUP_STEPS WEIGHT_DECAY GRAD_CLIP LOSS_AGG_MODE ENTROPY_COEFF TEMPERATURE TOP_P
  VAL_N VAL_TEMPERATURE VAL_TOP_P REWARD_LOW REWARD_HIGH ROLLOUT_NAME GEN_TP GPU_MEMORY_UTILIZATION
  SP_SIZE PARAM_OFFLOAD OPTIMIZER_OFFLOAD TOTAL_TRAINING_STEPS TEST_FREQ SAVE_FREQ LOGGER
)

etr_recipe_overrides() {
  local name
  for name in "${ETR_RECIPE_VARIABLES[@]}"; do
    [[ -n "${!name:-}" ]] || etr_fail "recipe variable $name is empty; set it at the top of the recipe or in the environment"
  done
  case "$ALGO" in
    grpo | dapo | etr | etr_micro | etr_macro) ;;
    *) etr_fail "ALGO=$ALGO: not an algorithm preset; use grpo, dapo, etr, etr_micro or etr_macro (etr_verl/hydra_configs/algo/)" ;;
  esac
  local max_tokens=$(((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH) * 2)) logger_list
  logger_list=$(etr_logger_list "${LOGGER}") || exit 2
  ETR_OVERRIDES=(
    "algo=${ALGO}"
    "backend=${BACKEND:-gpu}"  # local_cpu: the CPU smoke backend of the tests, never for real runs
    # data: parquet in verl's schema (recipes/data/prepare_math_data.py)
    "data.train_files=${TRAIN_FILE}"
    "data.val_files=${TEST_FILE}"
    "data.prompt_key=prompt"
    "data.max_prompt_length=${MAX_PROMPT_LENGTH}"
    "data.max_response_length=${MAX_RESPONSE_LENGTH}"
    "data.train_batch_size=${TRAIN_PROMPT_BSZ}"
    "data.filter_overlong_prompts=true"
    "data.truncation=error"
    # model and actor
    "actor_rollout_ref.model.path=${MODEL_PATH}"
    "actor_rollout_ref.model.use_remove_padding=true"
    "actor_rollout_ref.model.enable_gradient_checkpointing=true"
    "actor_rollout_ref.actor.optim.lr=${LR}"
    "actor_rollout_ref.actor.optim.lr_warmup_steps=${LR_WARMUP_STEPS}"
    "actor_rollout_ref.actor.optim.weight_decay=${WEIGHT_DECAY}"
    "actor_rollout_ref.actor.optim.clip_grad=${GRAD_CLIP}"
    "actor_rollout_ref.actor.ppo_mini_batch_size=${TRAIN_PROMPT_MINI_BSZ}"
    "actor_rollout_ref.actor.ppo_epochs=${PPO_EPOCHS}"
    "actor_rollout_ref.actor.use_dynamic_bsz=true"
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=${max_tokens}"
    "actor_rollout_ref.actor.loss_agg_mode=${LOSS_AGG_MODE}"
    "actor_rollout_ref.actor.entropy_coeff=${ENTROPY_COEFF}"
    "actor_rollout_ref.actor.use_kl_loss=false"
    "actor_rollout_ref.actor.ulysses_sequence_parallel_size=${SP_SIZE}"
    "actor_rollout_ref.actor.fsdp_config.param_offload=${PARAM_OFFLOAD}"
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=${OPTIMIZER_OFFLOAD}"
    "algorithm.use_kl_in_reward=false"
    # rollout
    "actor_rollout_ref.rollout.name=${ROLLOUT_NAME}"
    "actor_rollout_ref.rollout.n=${N_RESP_PER_PROMPT}"
    "actor_rollout_ref.rollout.temperature=${TEMPERATURE}"
    "actor_rollout_ref.rollout.top_p=${TOP_P}"
    "actor_rollout_ref.rollout.tensor_model_parallel_size=${GEN_TP}"
    "actor_rollout_ref.rollout.gpu_memory_utilization=${GPU_MEMORY_UTILIZATION}"
    "actor_rollout_ref.rollout.max_num_batched_tokens=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))"
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=${max_tokens}"
    # validation: avg@VAL_N, logged as val-core/<data_source>/acc/mean@VAL_N (docs/evaluation.md)
    "actor_rollout_ref.rollout.val_kwargs.n=${VAL_N}"
    "actor_rollout_ref.rollout.val_kwargs.do_sample=true"
    "actor_rollout_ref.rollout.val_kwargs.temperature=${VAL_TEMPERATURE}"
    "actor_rollout_ref.rollout.val_kwargs.top_p=${VAL_TOP_P}"
    # reward: verl 0.9.x keys (reward.*); verl's default_compute_score grades by data_source
    "reward.reward_manager.name=naive"
    "algorithm.etr.reward_low=${REWARD_LOW}"
    "algorithm.etr.reward_high=${REWARD_HIGH}"
    # trainer
    "trainer.nnodes=${NNODES}"
    "trainer.n_gpus_per_node=${GPUS_PER_NODE}"
    "trainer.total_training_steps=${TOTAL_TRAINING_STEPS}"
    "trainer.test_freq=${TEST_FREQ}"
    "trainer.save_freq=${SAVE_FREQ}"
    "trainer.val_before_train=true"
    "trainer.resume_mode=auto"
    "trainer.default_local_dir=${CKPTS_DIR}"
    "trainer.project_name=${PROJECT_NAME}"
    "trainer.experiment_name=${EXP_NAME}"
    "trainer.logger=${logger_list}"
  )
}

# LOGGER=console,wandb -> ["console","wandb"] (verl's trainer.logger list)
etr_logger_list() {
  local item out=""
  local -a items
  IFS=',' read -r -a items <<<"$1"
  for item in "${items[@]}"; do
    case "$item" in
      console | wandb | tensorboard | file | mlflow | swanlab | clearml | trackio) ;;
      *) etr_fail "LOGGER=$1: unknown logger '$item'; use a comma-separated list of console, wandb, tensorboard, file" ;;
    esac
    out+="${out:+,}\"${item}\""
  done
  printf '[%s]' "$out"
}

etr_runtime_env_json() {
  # every Ray process of the job (driver, TaskRunner, workers, on every node) imports etr_verl loudly
  printf '{"env_vars": {"VERL_USE_EXTERNAL_MODULES": "etr_verl.plugin", "TOKENIZERS_PARALLELISM": "true", "NCCL_DEBUG": "WARN"}}'
}

# A local run (no RAY_ADDRESS) reads its data and model on this machine: check them before anything starts. A job
# submitted to a cluster reads them there, so nothing is checked here.
etr_check_local_inputs() {
  local file
  local -a files
  IFS=',' read -r -a files <<<"$(printf '%s,%s' "$TRAIN_FILE" "$TEST_FILE" | tr -d '[]')"
  for file in "${files[@]}"; do
    [[ -z "$file" || -f "$file" ]] ||
      etr_fail "data file $file does not exist (TRAIN_FILE / TEST_FILE); prepare the data with: python recipes/data/prepare_math_data.py --out DATA_DIR"
  done
  # MODEL_FROM_MERGE=1: the model is written by a checkpoint merge first (recipes/eval), so a dry run has none yet
  if [[ "${MODEL_FROM_MERGE:-0}" != 1 ]] && [[ "$MODEL_PATH" == /* || "$MODEL_PATH" == .* || "$MODEL_PATH" == "~"* ]] &&
    [[ ! -e "$MODEL_PATH" ]]; then
    etr_fail "MODEL_PATH=$MODEL_PATH does not exist (a local path; for a Hugging Face model give its id, org/name)"
  fi
}

# `ray job submit` needs the ray CLI: on PATH, or beside PYTHON (a venv that is not activated).
etr_find_ray_cli() {
  ETR_RAY_CLI=$(command -v ray 2>/dev/null || true)
  if [[ -z "$ETR_RAY_CLI" ]]; then
    local interpreter
    interpreter=$(command -v "${PYTHON:-python3}" 2>/dev/null || true)
    [[ -n "$interpreter" && -x "$(dirname "$interpreter")/ray" ]] && ETR_RAY_CLI="$(dirname "$interpreter")/ray"
  fi
  [[ -n "$ETR_RAY_CLI" ]] ||
    etr_fail "RAY_ADDRESS is set but the ray CLI is found neither on PATH nor beside PYTHON=${PYTHON:-python3}; activate the environment where etr-verl is installed, or set PYTHON to its interpreter"
}

# A job server that does not answer fails here in seconds, not after ray's own retries.
etr_check_ray_address() {
  [[ "$RAY_ADDRESS" == http://* || "$RAY_ADDRESS" == https://* ]] || return 0
  "${PYTHON:-python3}" - "$RAY_ADDRESS" <<'PY' ||
import sys
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/api/version", timeout=5)
except Exception as error:  # one line, not a traceback: the message below says what to do
    sys.exit(f"[etr-recipe] {sys.argv[1]}: {error}")
PY
    etr_fail "RAY_ADDRESS=$RAY_ADDRESS does not answer within 5 s: start the cluster's head (ray start --head --dashboard-host=...) or fix the address (the job server, usually http://HEAD:8265)"
}

etr_run_recipe() {
  local dry_run="${DRY_RUN:-0}" arg
  local -a extra=()
  for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then dry_run=1; else extra+=("$arg"); fi
  done
  etr_recipe_overrides
  local python="${PYTHON:-python3}"
  local -a train=("$python" -m etr_verl.main "${ETR_OVERRIDES[@]}" "${extra[@]}")
  local -a command=("${train[@]}")
  [[ -n "${RAY_ADDRESS:-}" ]] || etr_check_local_inputs
  if [[ -n "${RAY_ADDRESS:-}" ]]; then
    local -a wait_flag=(--no-wait)
    [[ "${SUBMIT_WAIT:-0}" == 1 ]] && wait_flag=()
    etr_find_ray_cli
    command=("$ETR_RAY_CLI" job submit --address "$RAY_ADDRESS" --runtime-env-json "$(etr_runtime_env_json)"
      "${wait_flag[@]}" -- python3 -m etr_verl.main "${ETR_OVERRIDES[@]}" "${extra[@]}")
  elif [[ ",${LOGGER}," == *",wandb,"* && -z "${WANDB_API_KEY:-}" && "$dry_run" != 1 ]]; then
    etr_fail "LOGGER includes wandb but WANDB_API_KEY is not set in the environment; export it (never put it in a script), or use LOGGER=console,tensorboard"
  fi
  if [[ "$dry_run" == 1 ]]; then
    echo "# etr-recipe dry run. Command:"
    printf '%q ' "${command[@]}"
    echo
    echo "# Resolved config (composed and validated here by etr_verl.main --dry-run):"
    "${train[0]}" -m etr_verl.main --dry-run "${ETR_OVERRIDES[@]}" "${extra[@]}"
    return
  fi
  if [[ -n "${RAY_ADDRESS:-}" ]]; then  # fail here, in seconds, not on the cluster after the job was queued
    "${train[0]}" -m etr_verl.main --dry-run "${ETR_OVERRIDES[@]}" "${extra[@]}" >/dev/null ||
      etr_fail "the config does not pass etr_verl.main's checks (above); nothing was submitted"
    etr_check_ray_address
  fi
  echo "[etr-recipe] $(printf '%q ' "${command[@]}")"
  "${command[@]}"
}
