#!/usr/bin/env bash
# Qwen2.5-Math-7B (base) with GRPO, DAPO clip-higher, ETR and ETR's two ablations. Runs differ only in ALGO.
#
#   ALGO=etr       bash recipes/qwen2_5_math_7b/train.sh      # grpo | dapo | etr | etr_micro | etr_macro
#   DRY_RUN=1      bash recipes/qwen2_5_math_7b/train.sh      # print the command + resolved config; run nothing
#   RAY_ADDRESS=http://HEAD:8265 bash recipes/qwen2_5_math_7b/train.sh   # ray job submit (docs/recipes.md)
#   bash recipes/qwen2_5_math_7b/train.sh trainer.total_training_steps=20 # extra Hydra overrides go last, and win
#
# Every value below can be overridden from the environment. These are etr-verl's settings, not the paper's (its
# exact hyperparameters were not available): several PPO mini-batches per step so that clip bounds bind,
# entropy_coeff=0, token-mean aggregation, no KL. Data: recipes/data/prepare_math_data.py. Protocol and results:
# docs/evaluation.md.
set -euo pipefail

# ---- the algorithm: the only difference between the runs of the comparison --------------------------------------
ALGO=${ALGO:-etr}

# ---- cluster and paths (environment) ---------------------------------------------------------------------------
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}
DATA_DIR=${DATA_DIR:-$HOME/data/etr}
TRAIN_SET=${TRAIN_SET:-dapo}                       # dapo (DAPO-Math-17k, scores -1/+1) | math (MATH train, 0/1)
TRAIN_FILE=${TRAIN_FILE:-$DATA_DIR/${TRAIN_SET}_train.parquet}
TEST_FILE=${TEST_FILE:-[$DATA_DIR/aime24.parquet,$DATA_DIR/aime25.parquet,$DATA_DIR/math500.parquet]}
PROJECT_NAME=${PROJECT_NAME:-etr-reproduction}
EXP_NAME=${EXP_NAME:-qwen2.5-math-7b-${ALGO}-${TRAIN_SET}}
CKPTS_DIR=${CKPTS_DIR:-$HOME/ckpts/$PROJECT_NAME/$EXP_NAME}
LOGGER=${LOGGER:-console,wandb}                    # console,tensorboard: no account needed (TENSORBOARD_DIR)

# ---- rollouts and updates --------------------------------------------------------------------------------------
TRAIN_PROMPT_BSZ=${TRAIN_PROMPT_BSZ:-256}          # prompts per step
N_RESP_PER_PROMPT=${N_RESP_PER_PROMPT:-16}         # group size G
TRAIN_PROMPT_MINI_BSZ=${TRAIN_PROMPT_MINI_BSZ:-64} # 256 / 64 = 4 PPO updates per step: clipping can bind
PPO_EPOCHS=${PPO_EPOCHS:-1}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}       # Qwen2.5-Math-7B has a 4096-token context
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-3072}
TEMPERATURE=${TEMPERATURE:-1.0}
TOP_P=${TOP_P:-1.0}

# ---- optimisation ----------------------------------------------------------------------------------------------
LR=${LR:-1e-6}
LR_WARMUP_STEPS=${LR_WARMUP_STEPS:-10}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.1}
GRAD_CLIP=${GRAD_CLIP:-1.0}
LOSS_AGG_MODE=${LOSS_AGG_MODE:-token-mean}
ENTROPY_COEFF=${ENTROPY_COEFF:-0}
TOTAL_TRAINING_STEPS=${TOTAL_TRAINING_STEPS:-300}

# ---- reward range for ETR's macro signal (algorithm.etr): must match the grader of TRAIN_SET --------------------
if [[ "$TRAIN_SET" == math ]]; then REWARD_LOW=${REWARD_LOW:-0}; else REWARD_LOW=${REWARD_LOW:--1}; fi
REWARD_HIGH=${REWARD_HIGH:-1}

# ---- validation: avg@32 on AIME 2024/2025 and MATH-500 ---------------------------------------------------------
VAL_N=${VAL_N:-32}
VAL_TEMPERATURE=${VAL_TEMPERATURE:-1.0}
VAL_TOP_P=${VAL_TOP_P:-0.7}
TEST_FREQ=${TEST_FREQ:-10}
SAVE_FREQ=${SAVE_FREQ:-50}

# ---- systems ---------------------------------------------------------------------------------------------------
ROLLOUT_NAME=${ROLLOUT_NAME:-vllm}
GEN_TP=${GEN_TP:-1}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.8}
SP_SIZE=${SP_SIZE:-1}
PARAM_OFFLOAD=${PARAM_OFFLOAD:-false}
OPTIMIZER_OFFLOAD=${OPTIMIZER_OFFLOAD:-false}

# shellcheck source=recipes/common/launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/launch.sh"
etr_run_recipe "$@"
