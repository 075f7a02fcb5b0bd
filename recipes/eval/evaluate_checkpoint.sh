#!/usr/bin/env bash
# Evaluate one checkpoint with verl's own validation loop (trainer.val_only): avg@VAL_N on AIME 2024 / 2025 and
# MATH-500, the protocol of docs/evaluation.md. Runs on this node (with a Ray cluster started here, on all of it).
#
#   CKPT=$HOME/ckpts/etr-reproduction/qwen2.5-math-7b-etr-dapo/global_step_300 bash recipes/eval/evaluate_checkpoint.sh
#   CKPT=Qwen/Qwen2.5-Math-7B bash recipes/eval/evaluate_checkpoint.sh     # a Hugging Face model: the step-0 row
#   DRY_RUN=1 CKPT=... bash recipes/eval/evaluate_checkpoint.sh            # print the commands and config only
#
# A verl checkpoint (.../global_step_N, with actor/) is first merged to a Hugging Face model with verl's
# `python -m verl.model_merger merge --backend fsdp` (once; reused). Results: $EVAL_DIR/metrics.jsonl (verl's file
# logger) and a table printed by recipes/eval/summarize.py.
set -euo pipefail

CKPT=${CKPT:?set CKPT to a verl checkpoint (.../global_step_N) or a Hugging Face model path}
# a local path must exist; anything else must look like a Hugging Face id (org/name), so a typo fails here
if [[ ! -e "$CKPT" ]]; then
  if [[ "$CKPT" == /* || "$CKPT" == .* || "$CKPT" == "~"* || "$CKPT" == */*/* || "$CKPT" == *global_step* ]]; then
    echo "[etr-eval] CKPT=$CKPT does not exist: give an existing checkpoint (.../global_step_N) or model directory," \
      "or a Hugging Face model id (org/name)" >&2
    exit 2
  fi
fi
PYTHON=${PYTHON:-python3}
DATA_DIR=${DATA_DIR:-$HOME/data/etr}
TEST_FILE=${TEST_FILE:-[$DATA_DIR/aime24.parquet,$DATA_DIR/aime25.parquet,$DATA_DIR/math500.parquet]}
EVAL_DIR=${EVAL_DIR:-${CKPT%/}/eval}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

# ---- the protocol (docs/evaluation.md) -------------------------------------------------------------------------
VAL_N=${VAL_N:-32}                      # samples per problem: avg@32
VAL_TEMPERATURE=${VAL_TEMPERATURE:-1.0}
VAL_TOP_P=${VAL_TOP_P:-0.7}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-2048}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-8192}  # use the length the model was trained with (3072 for Qwen2.5-Math)

# ---- systems ---------------------------------------------------------------------------------------------------
ROLLOUT_NAME=${ROLLOUT_NAME:-vllm}
GEN_TP=${GEN_TP:-1}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.8}

dry_run=${DRY_RUN:-0}
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && dry_run=1; done

if [[ -d "$CKPT/actor" ]]; then
  MODEL_PATH=${MERGED_DIR:-${CKPT%/}/actor/huggingface_merged}
  MODEL_FROM_MERGE=1  # written by the merge below (a dry run only prints it)
  merge=("$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$CKPT/actor" --target_dir "$MODEL_PATH")
  if [[ "$dry_run" == 1 ]]; then
    echo "# would merge the checkpoint first: $(printf '%q ' "${merge[@]}")"
  elif [[ ! -f "$MODEL_PATH/config.json" ]]; then
    echo "[etr-eval] merging $CKPT/actor -> $MODEL_PATH"
    "${merge[@]}"
  fi
else
  MODEL_PATH=$CKPT
fi

# training-only variables the shared launcher requires; with trainer.val_only they shape nothing that runs
ALGO=grpo
TRAIN_FILE=${TRAIN_FILE:-${TEST_FILE#[}}
TRAIN_FILE=${TRAIN_FILE%%,*}
TRAIN_FILE=${TRAIN_FILE%]}
PROJECT_NAME=etr-eval
EXP_NAME=$(basename "${CKPT%/}")
CKPTS_DIR=$EVAL_DIR/unused_checkpoints
TRAIN_PROMPT_BSZ=$((2 * GPUS_PER_NODE))
N_RESP_PER_PROMPT=1
TRAIN_PROMPT_MINI_BSZ=${GPUS_PER_NODE}
PPO_EPOCHS=1
LR=1e-6 LR_WARMUP_STEPS=0 WEIGHT_DECAY=0 GRAD_CLIP=1.0 LOSS_AGG_MODE=token-mean ENTROPY_COEFF=0
TEMPERATURE=1.0 TOP_P=1.0 REWARD_LOW=-1 REWARD_HIGH=1 SP_SIZE=1 PARAM_OFFLOAD=false OPTIMIZER_OFFLOAD=false
TOTAL_TRAINING_STEPS=1 TEST_FREQ=1 SAVE_FREQ=-1
LOGGER=console,file

# shellcheck source=recipes/common/launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/launch.sh"
[[ "$dry_run" == 1 ]] || mkdir -p "$EVAL_DIR"  # a dry run writes nothing
export VERL_FILE_LOGGER_PATH="$EVAL_DIR/metrics.jsonl"
unset RAY_ADDRESS  # evaluation runs here; ray.init() joins a cluster started on this node, if there is one
etr_run_recipe trainer.val_only=true "$@"
if [[ "$dry_run" != 1 ]]; then
  "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/summarize.py" "$VERL_FILE_LOGGER_PATH"
fi
