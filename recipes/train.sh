#!/usr/bin/env bash
# Run one of the paper's experiments on this node (Ray starts here, or joins a cluster started on this node).
#
#   bash recipes/train.sh EXPERIMENT [Hydra overrides...] [--dry-run]
#   bash recipes/train.sh qwen3_8b_base_dapo17k algo=etr
#   bash recipes/train.sh qwen3_8b_base_dapo17k algo=grpo paths.data_dir=/shared/data/etr trainer.total_training_steps=20
#   bash recipes/train.sh qwen3_8b_base_dapo17k algo=etr --dry-run     # the resolved, validated config; runs nothing
#
# EXPERIMENT is a file of hydra_configs/experiment/, which holds every hyperparameter; `algo=` picks the algorithm
# (grpo, dapo, etr, etr_micro, etr_macro), `profile=` the hardware (1x8, 4x8, 1x4_offload). Overrides go last and
# win. Environment: PYTHON (the interpreter with etr-verl installed, default python3); W&B reads WANDB_API_KEY.
# Before anything runs: the verl pin (recipes/REQUIRED_VERL.txt). This script is also the entrypoint of a job
# submitted by recipes/submit.sh.
set -euo pipefail
# shellcheck source=recipes/common/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/common/lib.sh"

etr_parse_command_line "$@"
etr_check_verl_pin
etr_train_command
[[ "$ETR_DRY_RUN" == 1 ]] && ETR_TRAIN_COMMAND+=(--dry-run)
echo "[etr-recipe] $(printf '%q ' "${ETR_TRAIN_COMMAND[@]}")" >&2
exec "${ETR_TRAIN_COMMAND[@]}"
