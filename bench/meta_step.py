"""Meta-training throughput: meta-steps/s, trajectories/s, compile time, memory,
FLOPs against the machine's matmul rate, and the PyTorch reference.

  python bench/meta_step.py --out bench/results/cpu.json            # default config
  python bench/meta_step.py --meta-batch 1 4 16 --variants second first remat
  python bench/meta_step.py --torch --out bench/results/cpu_vs_torch.json

Each case compiles a chunk of ``--steps`` meta-steps (one lax.scan, one
dispatch), runs it once to warm up, then times ``--repeats`` chunks. The
floor of a case is its analytic FLOPs (bench/flops.py) divided by the dense
float32 matmul rate measured in the same run. ``--torch`` times
bench/torch_ref.py (same sizes) in the same process, afterwards.
Synthetic images of Omniglot's shape are used: the cost does not depend on the
pixel values.
"""
import argparse
import os
import resource
import time

import flops
import jax
import jax.numpy as jnp
import output

from anml_jax import configs, data, meta, methods


def bench_case(cfg, steps, repeats):
  net = methods.network(cfg)
  imgs = jnp.asarray(data.synthetic(0, background=cfg.num_train_classes,
                                    evaluation=1, raw=True).background)
  state = meta.init_state(cfg, net)
  chunk = jax.jit(meta.make_train_chunk(methods.get(cfg.method).make_step(cfg, net), steps))
  t0 = time.perf_counter()
  compiled = chunk.lower(state, imgs).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = (cost or {}).get("flops")
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
  analytic = flops.training_step_flops(cfg) if cfg.method in flops.COUNTED else None
  return {"analytic_flops_per_step": analytic,
          "xla_flops_per_step": xla_flops / steps if xla_flops else None,
          "achieved_flops_per_s": analytic / (best / steps) if analytic else None,
          "meta_batch": cfg.meta_batch, "first_order": cfg.first_order,
          "remat": cfg.remat, "low_rank_head": cfg.low_rank_head,
          "conv_impl": net_impl(cfg), "unroll": cfg.unroll,
          "compile_s": compile_s, "s_per_step": best / steps,
          "steps_per_s": steps / best,
          "trajectories_per_s": steps * cfg.meta_batch / best,
          "s_per_step_all": [t / steps for t in times],
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
                 choices=["second", "first", "remat", "dense-head"],
                 help="dense-head: second order with the head's inner updates "
                      "dense (low_rank_head=False), the path before the factored head")
  p.add_argument("--conv-impl", nargs="+", default=["auto"])
  p.add_argument("--unroll", type=int, default=1)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--torch", action="store_true",
                 help="also time the PyTorch reference (bench/torch_ref.py)")
  p.add_argument("--torch-steps", type=int, default=3)
  p.add_argument("--matmul-n", type=int, default=2048)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  rate = flops.matmul_rate(args.matmul_n)
  print(f"dense float32 matmul ({args.matmul_n}^3): {rate / 1e9:.1f} GFLOP/s", flush=True)
  rows = []
  for impl in args.conv_impl:
    for mb in args.meta_batch:
      for v in args.variants:
        cfg = configs.get_config(args.config)
        cfg.meta_batch, cfg.unroll = mb, args.unroll
        cfg.first_order, cfg.remat = v == "first", v == "remat"
        cfg.low_rank_head = v != "dense-head"
        cfg.model.conv_impl = impl
        r = bench_case(cfg, args.steps, args.repeats)
        if r["analytic_flops_per_step"]:
          r["floor_s_per_step"] = r["analytic_flops_per_step"] / rate
          r["time_over_floor"] = r["s_per_step"] / r["floor_s_per_step"]
          r["fraction_of_matmul_rate"] = r["achieved_flops_per_s"] / rate
        rows.append(r)
        print(f"impl={r['conv_impl']:6s} B={mb:3d} {v:6s} unroll={args.unroll} "
              f"{r['steps_per_s']:8.3f} meta-steps/s {r['trajectories_per_s']:8.2f} traj/s "
              f"compile {r['compile_s']:6.1f}s dev-peak "
              f"{(r['device_peak_bytes'] or 0) / 2**30:.2f} GiB "
              f"host-peak {r['host_peak_bytes'] / 2**30:.2f} GiB "
              f"flops {(r['analytic_flops_per_step'] or 0) / 1e9:.1f} G "
              f"(XLA {(r['xla_flops_per_step'] or 0) / 1e9:.1f} G) "
              f"time/floor {r.get('time_over_floor', float('nan')):.2f}", flush=True)
  torch_rows = []
  if args.torch:
    import torch_ref
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    for v in args.variants:
      if v in ("remat", "dense-head"):
        continue
      t = torch_ref.time_meta_step(steps=args.torch_steps, device=device,
                                   first_order=v == "first", threads=os.cpu_count())
      jax_row = min((r for r in rows if r["first_order"] == (v == "first")
                     and r["meta_batch"] == 1 and not r["remat"] and r["low_rank_head"]),
                    key=lambda r: r["s_per_step"])
      t["jax_speedup"] = t["s_per_step"] / jax_row["s_per_step"]
      torch_rows.append(t)
      print(f"torch {t['torch']} {device} {v:6s} {t['s_per_step']:.3f} s/meta-step "
            f"(JAX {jax_row['s_per_step']:.3f} s: {t['jax_speedup']:.1f}x faster)",
            flush=True)
  output.write(args.out, {"matmul_flops_per_s": rate, "matmul_n": args.matmul_n,
                          "torch": torch_rows, "config": args.config, "rows": rows})


if __name__ == "__main__":
  main()
