#!/usr/bin/env bash
# Evaluate one checkpoint with the validation protocol of its experiment (hydra_configs/validation/, the protocol of
# docs/evaluation.md, shared with training-time validation) through verl's own validation loop (trainer.val_only).
# Runs on this node (with a Ray cluster started here, on all of it).
#
#   CKPT=$HOME/ckpts/etr-reproduction/qwen2.5-math-7b-dapo17k-etr/global_step_300 \
#     bash recipes/eval/evaluate_checkpoint.sh qwen2_5_math_7b_dapo17k
#   CKPT=Qwen/Qwen2.5-Math-7B bash recipes/eval/evaluate_checkpoint.sh qwen2_5_math_7b_dapo17k   # the step-0 row
#   CKPT=... bash recipes/eval/evaluate_checkpoint.sh EXPERIMENT [Hydra overrides...] [--dry-run]
#
# A verl checkpoint (.../global_step_N, with actor/) is first merged to a Hugging Face model with verl's
# `python -m verl.model_merger merge --backend fsdp` (once; reused). Results: $EVAL_DIR/metrics.jsonl (verl's file
# logger; EVAL_DIR defaults to $CKPT/eval, or $HOME/etr-eval/ORG_NAME for a hub model) and a table printed by
# recipes/eval/summarize.py.
set -euo pipefail
# shellcheck source=recipes/common/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/lib.sh"
etr_usage_if_asked "$@"

CKPT=${CKPT:?set CKPT to a verl checkpoint (.../global_step_N) or a Hugging Face model path}
# a local path must exist; anything else must look like a Hugging Face id (org/name), so a typo fails here
if [[ ! -e "$CKPT" ]]; then
  if [[ "$CKPT" == /* || "$CKPT" == .* || "$CKPT" == "~"* || "$CKPT" == */*/* || "$CKPT" == *global_step* ]]; then
    etr_fail "CKPT=$CKPT does not exist: give an existing checkpoint (.../global_step_N) or model directory, or a Hugging Face model id (org/name)"
  fi
fi
# an existing directory must hold what the run reads from it: a verl FSDP checkpoint's actor/ (what verl's model
# merger reads: fsdp_config.json, the rank-0 shard, huggingface/config.json), or a Hugging Face model (config.json);
# an empty global_step_N or the experiment's own directory would otherwise fail only after Ray has started
merged=${MERGED_DIR:-${CKPT%/}/actor/huggingface_merged}  # where a verl checkpoint's merged model goes
if [[ -d "$CKPT" ]]; then
  if [[ -d "$CKPT/actor" ]]; then
    if [[ ! -f "$merged/config.json" ]]; then
      missing=()
      [[ -f "$CKPT/actor/fsdp_config.json" ]] || missing+=(actor/fsdp_config.json)
      compgen -G "$CKPT/actor/model_world_size_*_rank_0.pt" >/dev/null || missing+=("actor/model_world_size_*_rank_0.pt")
      [[ -f "$CKPT/actor/huggingface/config.json" ]] || missing+=(actor/huggingface/config.json)
      ((${#missing[@]} == 0)) ||
        etr_fail "CKPT=$CKPT is not a complete verl FSDP checkpoint: ${missing[*]} missing (an interrupted save? take an earlier global_step_N)"
    fi
  elif [[ ! -f "$CKPT/config.json" ]]; then
    steps=$(cd "$CKPT" && compgen -G "global_step_*" | sort -t_ -k3 -n | tr '\n' ' ' || true)
    etr_fail "CKPT=$CKPT is neither a verl checkpoint (.../global_step_N with actor/) nor a Hugging Face model directory (config.json)${steps:+; its checkpoints: ${steps% }}"
  fi
fi
etr_parse_command_line "$@"
# a local checkpoint or model keeps its evaluation beside it; a hub model's goes to $HOME/etr-eval/ORG_NAME, never
# a relative directory under the working directory (which a later `ray job submit` would upload)
if [[ -e "$CKPT" ]]; then
  EVAL_DIR=${EVAL_DIR:-${CKPT%/}/eval}
else
  EVAL_DIR=${EVAL_DIR:-$HOME/etr-eval/${CKPT//\//_}}
fi

if [[ -d "$CKPT/actor" ]]; then
  model=$merged
  merge=("$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$CKPT/actor" --target_dir "$model")
  if [[ "$ETR_DRY_RUN" == 1 ]]; then
    echo "# would merge the checkpoint first: $(printf '%q ' "${merge[@]}")"
  elif [[ ! -f "$model/config.json" ]]; then
    etr_check_verl_pin
    echo "[etr-eval] merging $CKPT/actor -> $model" >&2
    "${merge[@]}"
  fi
else
  model=$CKPT
fi

# the experiment as trained, its validation only: the model to evaluate; verl builds a train dataset even for
# val_only, so it reads the validation files; no resume (a checkpoint of the experiment would replace the model)
# shellcheck disable=SC2016  # a Hydra interpolation, resolved by OmegaConf, not by bash
train_files_are_val_files='data.train_files=${data.val_files}'
ETR_OVERRIDES=(
  "actor_rollout_ref.model.path=$model"
  "$train_files_are_val_files"
  trainer.val_only=true
  trainer.resume_mode=disable
  "trainer.logger=[console,file]"
  "trainer.experiment_name=eval-$(basename "${CKPT%/}")"
  "${ETR_OVERRIDES[@]}"
)
[[ "$ETR_DRY_RUN" == 1 ]] && ETR_OVERRIDES+=(--dry-run) && echo "# would write the results to $EVAL_DIR/metrics.jsonl"
[[ "$ETR_DRY_RUN" == 1 ]] || mkdir -p "$EVAL_DIR"  # a dry run writes nothing
export VERL_FILE_LOGGER_PATH="$EVAL_DIR/metrics.jsonl"
unset RAY_ADDRESS  # evaluation runs here; ray.init() joins a cluster started on this node, if there is one
bash "$ETR_REPO_ROOT/recipes/train.sh" "$ETR_EXPERIMENT" "${ETR_OVERRIDES[@]}"
if [[ "$ETR_DRY_RUN" != 1 ]]; then
  "$PYTHON" "$ETR_REPO_ROOT/recipes/eval/summarize.py" "$VERL_FILE_LOGGER_PATH"
fi
