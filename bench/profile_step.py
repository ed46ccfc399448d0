"""Where a meta-step's time goes: a jax.profiler trace of one jitted chunk of
meta-steps, its XLA ops grouped by kind.

  python bench/profile_step.py --out bench/results/cpu_profile.json
  python bench/profile_step.py --trace-dir /tmp/anml_trace  # keep the trace (Perfetto)
  python bench/profile_step.py --by-op --set low_rank_head=False --top 30   # single ops, dense head

Compiles and warms up a chunk of ``--steps`` meta-steps of the config, traces
one more call, then sums the durations of the trace's XLA op events by op kind
(the op name without its numeric suffix: ``ynn_fusion.119`` -> ``ynn_fusion``,
the XNNPACK/YNNPACK matmul fusions on CPU). Per-op events need a backend that
emits them (the CPU thunk runtime does).
"""
import argparse
import ast
import collections
import glob
import gzip
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import output

from anml_jax import configs, data, meta, methods

# Trace events that are not XLA ops (runtime, Python, thread-pool waits).
NOT_OPS = ("ThunkExecutor", "$", "Slinky", "PjRt", "Thunk")


def op_kind(name: str) -> str:
  head, _, tail = name.rpartition(".")
  return head if head and tail.isdigit() else name


def op_times(trace_file: str, by_op: bool = False) -> collections.Counter:
  """Microseconds per op kind (per op with ``by_op``) in a Perfetto
  ``*.trace.json.gz`` file."""
  with gzip.open(trace_file) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  kinds = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(NOT_OPS):
      kinds[e["name"] if by_op else op_kind(e["name"])] += e.get("dur", 0)
  return kinds


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=configs.NAMES)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--top", type=int, default=15)
  p.add_argument("--by-op", action="store_true",
                 help="one row per XLA op (e.g. copy_bitcast_fusion.12) instead of per kind")
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                 help="config overrides, e.g. low_rank_head=False first_order=True")
  p.add_argument("--trace-dir", default=None,
                 help="keep the Perfetto trace there (default: a temporary folder, "
                      "removed at exit)")
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  cfg = configs.get_config(args.config)
  for kv in args.set:
    key, value = kv.split("=", 1)
    cfg[key] = ast.literal_eval(value)
  net = methods.network(cfg)
  imgs = jnp.asarray(data.synthetic(0, background=cfg.num_train_classes,
                                    evaluation=1).background)
  state = meta.init_state(cfg, net)
  chunk = jax.jit(meta.make_train_chunk(methods.get(cfg.method).make_step(cfg, net), args.steps))
  state, m = chunk(state, imgs)
  jax.block_until_ready(m)
  # held until the script exits, which removes it
  scratch = None if args.trace_dir else tempfile.TemporaryDirectory(prefix="anml_trace_")
  trace_dir = args.trace_dir or scratch.name
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  state, m = chunk(state, imgs)
  jax.block_until_ready(m)
  jax.profiler.stop_trace()
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
  if not files:
    raise SystemExit(f"no Perfetto trace was written under {trace_dir}")
  kinds = op_times(files[-1], args.by_op)
  total = sum(kinds.values())
  if not total:
    raise SystemExit("the trace has no per-op events on this backend")
  rows = [{"op_kind": k, "ms_per_step": v / 1e3 / args.steps, "share": v / total}
          for k, v in kinds.most_common()]
  print(f"{jax.devices()[0].device_kind}: XLA ops {total / 1e3 / args.steps:.1f} ms "
        f"per meta-step (summed over threads)")
  for r in rows[:args.top]:
    print(f"{r['ms_per_step']:9.1f} ms {100 * r['share']:5.1f} %  {r['op_kind']}")
  if args.out:
    output.save(args.out, {"backend": jax.default_backend(),
                           "device": jax.devices()[0].device_kind, "jax": jax.__version__,
                           "config": args.config, "steps": args.steps, "rows": rows})


if __name__ == "__main__":
  main()
