#!/usr/bin/env bash
# Clean selection (issue 58): pretraining recipes trained without the
# validation alphabets (configs.VALIDATION_ALPHABETS: 212 background classes
# no run sees), each judged on validation streams of those classes with the
# meta-test's protocol (configs/eval.py:validation: N up to 200, 10 runs).
# Every design choice is read off these records, never off the meta-test.
#
#   results/validation.sh RUNS OUT              # every stage below, in order
#   STAGES="shift2 shift0" results/validation.sh RUNS OUT
#   SMOKE=1 results/validation.sh RUNS OUT      # the same stages on synthetic data, seconds
#
# RUNS gets the training runs (resumed from their last checkpoint when run
# again), OUT one folder per validation record (a finished one is skipped).
set -eu
runs=${1:?usage: results/validation.sh RUNS OUT}
out=${2:?usage: results/validation.sh RUNS OUT}
py=${PYTHON:-python}
# the split is configs.VALIDATION_ALPHABETS, written once there
held=$("$py" -c "from anml_jax import configs; print(repr(configs.VALIDATION_ALPHABETS))")
classes=$("$py" -c "from anml_jax import configs; print(configs.VALIDATION_TRAIN_CLASSES)")
data=(); size=""; protocol="configs/eval.py:validation"
if [[ ${SMOKE:-0} == 1 ]]; then
  data=(--data_source=synthetic); size=":smoke"; held='("synthetic5",)'; classes=25
  protocol="configs/eval.py:smoke"
fi
mkdir -p "$runs" "$out"

pretrain() {  # NAME [--config.KEY=VALUE ...]: pretrain RUNS/NAME without the held-out alphabets
  local name=$1; shift
  if [[ -f "$runs/$name/config.json" ]]; then
    "$py" train.py --workdir="$runs/$name" --resume --noprogress "${data[@]}"
  else
    "$py" train.py --workdir="$runs/$name" --config="configs/pretrain.py$size" --noprogress \
      "${data[@]}" --config.validation_alphabets="$held" --config.num_train_classes=$classes "$@"
  fi
}

validate() {  # RUN NAME [--eval_config.KEY=VALUE ...]: OUT/NAME, validation streams of RUN
  local run=$1 name=$2; shift 2
  [[ -f "$out/$name/results.json" ]] && { echo "$out/$name: done"; return; }
  "$py" evaluate.py --checkpoint="$runs/$run" --out="$out/$name" --eval_config="$protocol" \
    "${data[@]}" --eval_config.stream_classes=validation "$@"
}

recipe=(--config.steps=2000 --config.zap=epoch --config.zap_scale=block)
[[ ${SMOKE:-0} == 1 ]] && recipe=(--config.zap=epoch --config.zap_scale=block)
for stage in ${STAGES:-shift2 shift0}; do
  case $stage in
    shift2)   # the 85.9 % recipe: zapped every epoch at the block std, images moved up to 2 px
      pretrain pz_block_shift2 "${recipe[@]}" --config.shift=2
      validate pz_block_shift2 pz_block_shift2_gaussian --eval_config.learner=gaussian ;;
    shift0)   # the same without moving the images
      pretrain pz_block "${recipe[@]}"
      validate pz_block pz_block_gaussian --eval_config.learner=gaussian ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
