"""Meta-training throughput: meta-steps/s, trajectories/s, compile time, memory.

  python bench/meta_step.py --out bench/results_cpu.json            # default config
  python bench/meta_step.py --meta-batch 1 4 16 --variants second first remat

Each case compiles a chunk of ``--steps`` meta-steps (one lax.scan, one
dispatch), runs it once to warm up, then times ``--repeats`` chunks.
Synthetic images of Omniglot's shape are used: the cost does not depend on the
pixel values.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from anml_jax import configs, data, meta  # noqa: E402


def bench_case(cfg, steps, repeats):
  net = configs.make_network_from_config(cfg)
  imgs = jnp.asarray(data.synthetic_omniglot(0, background=cfg.num_train_classes,
                                             evaluation=1).background)
  state = meta.init_state(cfg, net)
  chunk = jax.jit(meta.make_train_chunk(meta.make_meta_train_step(cfg, net), steps))
  t0 = time.perf_counter()
  compiled = chunk.lower(state, imgs).compile()
  compile_s = time.perf_counter() - t0
  state, m = compiled(state, imgs)
  jax.block_until_ready(m)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, m = compiled(state, imgs)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  best = min(times)
  stats = jax.devices()[0].memory_stats() or {}
  return {"meta_batch": cfg.meta_batch, "first_order": cfg.first_order,
          "remat": cfg.remat, "conv_impl": net_impl(cfg), "unroll": cfg.unroll,
          "compile_s": compile_s, "s_per_step": best / steps,
          "steps_per_s": steps / best,
          "trajectories_per_s": steps * cfg.meta_batch / best,
          "device_peak_bytes": stats.get("peak_bytes_in_use"),
          "host_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          "final_loss": float(m["loss"][-1])}


def net_impl(cfg):
  from anml_jax.models import resolve_conv_impl
  return resolve_conv_impl(cfg.model.conv_impl)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=configs.NAMES)
  p.add_argument("--meta-batch", type=int, nargs="+", default=[1])
  p.add_argument("--variants", nargs="+", default=["second"],
                 choices=["second", "first", "remat"])
  p.add_argument("--conv-impl", nargs="+", default=["auto"])
  p.add_argument("--unroll", type=int, default=1)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  rows = []
  for impl in args.conv_impl:
    for mb in args.meta_batch:
      for v in args.variants:
        cfg = configs.get_config(args.config)
        cfg.meta_batch, cfg.unroll = mb, args.unroll
        cfg.first_order, cfg.remat = v == "first", v == "remat"
        cfg.model.conv_impl = impl
        r = bench_case(cfg, args.steps, args.repeats)
        rows.append(r)
        print(f"impl={r['conv_impl']:6s} B={mb:3d} {v:6s} unroll={args.unroll} "
              f"{r['steps_per_s']:8.3f} meta-steps/s {r['trajectories_per_s']:8.2f} traj/s "
              f"compile {r['compile_s']:6.1f}s dev-peak "
              f"{(r['device_peak_bytes'] or 0) / 2**30:.2f} GiB "
              f"host-peak {r['host_peak_bytes'] / 2**30:.2f} GiB", flush=True)
  out = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
         "jax": jax.__version__, "cpu_count": os.cpu_count(),
         "machine": platform.machine(), "config": args.config, "rows": rows}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
