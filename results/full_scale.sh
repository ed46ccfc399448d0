#!/usr/bin/env bash
# The full-scale reproduction (HISTORY.md, "How each record was made"): meta-train ANML (second
# order, and first order as the released code), OML and pretrain-and-transfer
# with the paper's settings, then meta-test each, and the untrained network
# (scratch), with the paper's protocol, sequentially and i.i.d. (oracle). Four
# chains run at once; one GPU holds all four.
#
#   results/full_scale.sh RUNS OUT            # paper settings
#   SMOKE=1 results/full_scale.sh RUNS OUT    # the same chains at smoke size (CPU minutes)
#
# RUNS gets the training runs, their logs and the exported parameters
# (RUNS/export/*.npz); OUT one results folder per evaluation. Running it again
# continues: training resumes from each run's last checkpoint, and an
# evaluation that finished (RUNS/<name>.done) is not repeated.
#
# Pretraining budget: a first pretrain run keeps the last 5 drawings of every
# class out (holdout_drawings=5) and scores them at every checkpoint; the final
# pretrain run uses all drawings for the number of steps at which that held-out
# accuracy peaked.
set -u
runs=${1:?usage: results/full_scale.sh RUNS OUT}
out=${2:?usage: results/full_scale.sh RUNS OUT}
py=${PYTHON:-python}
if [[ ${SMOKE:-0} == 1 ]]; then size=":smoke"; protocol="configs/eval.py:smoke"
else size=""; protocol="configs/eval.py"; fi
mkdir -p "$runs/export" "$out"

train() {  # NAME METHOD [--config.KEY=VALUE ...]: train, or resume, RUNS/NAME
  local name=$1 method=$2; shift 2
  local start=(--config="configs/$method.py$size")
  [[ -f $runs/$name/config.json ]] && start=(--resume)
  echo "$(date -u +%T) train $name" >&2
  "$py" train.py --workdir="$runs/$name" --noprogress "${start[@]}" "$@" \
      >> "$runs/$name.log" 2>&1
}

export_params() {  # NAME: RUNS/export/NAME.npz (parameters only)
  "$py" -c "import sys; from anml_jax import export_params; \
print(export_params(sys.argv[1], sys.argv[2]))" "$runs/$1" "$runs/export/$1.npz" \
      >> "$runs/$1.log" 2>&1
}

evaluate() {  # NAME [evaluate.py flags ...]: OUT/NAME, once
  local name=$1; shift
  [[ -f $runs/$name.done ]] && return 0
  echo "$(date -u +%T) evaluate $name" >&2
  "$py" evaluate.py --out="$out/$name" --eval_config="$protocol" "$@" \
      >> "$runs/$name.eval.log" 2>&1 && touch "$runs/$name.done"
}

meta_trained() {  # NAME METHOD [--config.KEY=VALUE ...]: train, export, evaluate sequentially and i.i.d.
  local name=$1
  train "$@" && export_params "$name" &&
  evaluate "$name" --checkpoint="$runs/$name" &&
  evaluate "${name}_oracle" --checkpoint="$runs/$name" --eval_config.oracle
}

peak_step() {  # RUN: the checkpoint step of its best holdout_accuracy (first of ties)
  "$py" -c "import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if 'holdout_accuracy' in r]
print(max(rows, key=lambda r: (r['holdout_accuracy'], -r['step']))['step'])" \
      "$runs/$1/metrics.jsonl"
}

pretrained_and_scratch() {
  train pretrain_holdout pretrain --config.holdout_drawings=5 &&
  budget=$(peak_step pretrain_holdout) &&
  echo "$(date -u +%T) pretrain budget: $budget steps" >&2 &&
  train pretrain pretrain --config.steps="$budget" && export_params pretrain &&
  evaluate pretrain --checkpoint="$runs/pretrain" &&
  evaluate pretrain_oracle --checkpoint="$runs/pretrain" --eval_config.oracle &&
  evaluate scratch --config="configs/scratch.py$size" &&
  evaluate scratch_oracle --config="configs/scratch.py$size" --eval_config.oracle
}

meta_trained anml anml & a=$!
meta_trained anml_first_order anml --config.first_order=True & f=$!
meta_trained oml oml & o=$!
pretrained_and_scratch & p=$!
status=0
for job in $a $f $o $p; do wait "$job" || status=1; done
echo "$(date -u +%T) finished (status $status)" >&2
exit $status
