#!/usr/bin/env bash
# Seeds on a lent GPU (issue 24), one stage per device call, each sized to
# finish within a 10-minute call and to write everything under OUT:
#
#   results/gpu_seeds.sh OUT bench                      # bench/seeds.py, K = 1, 4, 8
#   results/gpu_seeds.sh OUT train NAME CONFIG [--config.KEY=VALUE ...]
#       # K = 3 (SEEDS) seeds of configs/CONFIG in one program -> WORK/NAME
#       # (default WORK /tmp/anml_gpu: the device empties OUT before each call),
#       # each seed exported to OUT/export/NAME_seedS.npz (13.9 MB each), the
#       # run's config, metrics and logs to OUT/NAME_training.tar
#   results/gpu_seeds.sh OUT eval NPZ [evaluate.py flags ...]
#       # the paper's meta-test of one exported seed -> OUT/results/<npz name>
#   SMOKE=1 results/gpu_seeds.sh ...                    # the same at smoke size (CPU minutes)
#
# e.g. ANML second order, then its seeds' evaluations (carry the .npz files
# back with the device tool's `carry`):
#   results/gpu_seeds.sh $OUT train anml_so anml.py
#   results/gpu_seeds.sh $OUT eval export/anml_so_seed10.npz
# Training resumes when WORK/NAME already holds the run (a warm machine).
#
# Before a lease, here (not on the device):
#   results/gpu_seeds.sh prepare
# puts what the device call must carry in ignored folders (.data: Omniglot's
# zips and decoded cache, since ../shared stays behind; .whl: ml-collections,
# which the device image lacks) and prints the size that would travel and the
# lines each device command starts with.
set -euo pipefail
if [[ ${1:-} == prepare ]]; then
  py=${PYTHON:-.venv/bin/python}
  src=$("$py" -c "from anml_jax import data; print(data.default_omniglot_dir())")
  mkdir -p .data/omniglot .data/cache .whl
  cp "$src"/images_background.zip "$src"/images_evaluation.zip .data/omniglot/
  "$py" -c "from anml_jax import data
data.load_omniglot(omniglot_dir='.data/omniglot', cache_dir='.data/cache')"
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 -d .whl ml-collections==1.1.0
  for d in /.data/ /.whl/; do
    grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
  done
  tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  carried=$(du -cb .data .whl | tail -1 | cut -f1)
  echo "travels: tracked $((tracked / 1048576)) MiB + carried $((carried / 1048576)) MiB (limit 64)"
  if (( tracked + carried > 64 * 1048576 )); then
    echo "over the limit: move results/pretrained/*.npz aside for the call, and back after"
  fi
  cat <<'END'
device call: carry [".data", ".whl"]; the command starts
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ANML_OMNIGLOT_DIR=$PWD/.data/omniglot ANML_CACHE_DIR=$PWD/.data/cache PYTHON=python3 || exit;
END
  exit 0
fi
out=${1:?usage: results/gpu_seeds.sh OUT STAGE ...}
stage=${2:?usage: results/gpu_seeds.sh OUT STAGE ...}
shift 2
py=${PYTHON:-python}
seeds=${SEEDS:-3}
work=${WORK:-/tmp/anml_gpu}
if [[ ${SMOKE:-0} == 1 ]]; then size=":smoke"; protocol="configs/eval.py:smoke"; bench=smoke
else size=""; protocol="configs/eval.py"; bench=default; fi
mkdir -p "$out"
log() { echo "$(date -u +%T) $*" | tee -a "$out/gpu_seeds.log" >&2; }

case $stage in
  bench)
    mkdir -p "$out/bench"
    log "bench/seeds.py --config $bench"
    "$py" bench/seeds.py --config "$bench" --seeds 1 4 8 --out "$out/bench/seeds.json" \
        2>&1 | tee -a "$out/gpu_seeds.log" ;;
  train)
    name=${1:?train NAME CONFIG}; config=${2:?train NAME CONFIG}; shift 2
    run="$work/$name"
    start=(--config="configs/$config$size" --config.seeds="$seeds")
    [[ -f $run/config.json ]] && start=(--resume)
    log "train $name ($config, $seeds seeds)"
    "$py" train.py --workdir="$run" --noprogress "${start[@]}" "$@" 2>&1 | tee -a "$out/$name.log"
    mkdir -p "$out/export"
    for s in $("$py" -c "import sys; from anml_jax import load_run, meta
print(*meta.seed_list(load_run(sys.argv[1])[0]))" "$run"); do
      "$py" -c "import sys; from anml_jax import export_params
print(export_params(sys.argv[1], sys.argv[2], seed=int(sys.argv[3])))" \
          "$run" "$out/export/${name}_seed$s.npz" "$s" | tee -a "$out/$name.log"
    done
    sha256sum "$out"/export/"${name}"_seed*.npz | tee -a "$out/gpu_seeds.log"
    tar -cf "$out/${name}_training.tar" -C "$work" --exclude="$name/checkpoints" "$name" ;;
  eval)
    npz=${1:?eval NPZ}; shift
    name=$(basename "$npz" .npz)
    log "evaluate $name"
    "$py" evaluate.py --checkpoint="$npz" --eval_config="$protocol" \
        --out="$out/results/$name" "$@" 2>&1 | tee -a "$out/$name.eval.log" ;;
  *)
    echo "unknown stage $stage: bench, train or eval" >&2; exit 2 ;;
esac
log "done $stage"
