#!/usr/bin/env bash
# XLA CPU flags against the default second-order meta-step, one process per
# setting (XLA_FLAGS is read at start-up); base runs first and last to show
# the machine's noise. Usage: bash bench/xla_flags.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/xla_flags.sh OUT_DIR}
mkdir -p "$out"
run() {
  name=$1; shift
  XLA_FLAGS="$*" python bench/meta_step.py --variants second --steps 2 --repeats 3 \
      --matmul-n 1024 --out "$out/$name.json" > "$out/$name.log" 2>&1 || echo "$name failed"
  python -c "import json; r = json.load(open('$out/$name.json'))['rows'][0]; \
print(f\"$name: {r['s_per_step']:.3f} s/step (runs {[round(t, 3) for t in r['s_per_step_all']]})\")"
}
run base ""
run onednn "--xla_cpu_use_onednn=true"
run xnnpack "--xla_cpu_use_xnnpack=true"
run no_thunk_runtime "--xla_cpu_use_thunk_runtime=false"
run fast_math "--xla_cpu_enable_fast_math=true"
run no_eigen_threads "--xla_cpu_multi_thread_eigen=false"
run vector_width_512 "--xla_cpu_prefer_vector_width=512"
run concurrency_scheduler "--xla_cpu_enable_concurrency_optimized_scheduler=true"
run base_again ""
