"""Cost of the closed-form heads (anml_jax/heads.py) at the paper's sizes.

  python bench/heads.py --out bench/results/cpu_heads.json
  python bench/heads.py --heads ridge --blocks 1 64 --runs 10

For each head: (1) one stream of N classes (15 N images of d features), one
pass, ``block`` images per scan step: seconds per image; (2) a whole
meta-test call as evaluate.py makes it for the final runs: ``runs`` streams
of N classes, read out with one regulariser, every train and test drawing
scored; (3) the statistics' bytes per stream. Features are random (the cost
does not depend on their values); computing them is not counted (once per
evaluation: bench/meta_test.py's ``context_s``).
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import output

from anml_jax import heads


def _time(fn, *args, reps=3):
  jax.block_until_ready(fn(*args))             # compile
  best = float("inf")
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--classes", type=int, default=600)
  p.add_argument("--dim", type=int, default=2304, help="feature width (ANML: 2304)")
  p.add_argument("--runs", type=int, default=10)
  p.add_argument("--heads", nargs="+", default=sorted(heads.HEADS))
  p.add_argument("--blocks", nargs="+", type=int, default=[1, 64])
  p.add_argument("--reps", type=int, default=2)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  n, d, k = args.classes, args.dim, 15
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.random((n, 20, d), np.float32))
  x = feats[:, :k].reshape(-1, d)
  y = jnp.repeat(jnp.arange(n), k)
  classes = jnp.asarray(np.tile(np.arange(n), (args.runs, 1)))
  out = {"classes": n, "dim": d, "runs": args.runs, "images_per_stream": n * k,
         "heads": {}}
  for name in args.heads:
    head = heads.get(name)
    reg = jnp.asarray([(head.regs or (0.0,))[0]], jnp.float32)
    row = {"state_bytes": 4 * (n + n * d + (d * d if head.gram else 0))}
    for block in args.blocks:
      fit = jax.jit(lambda x, y, head=head, block=block: heads.fit(head, x, y, n, reg[0], block))
      s = _time(fit, x, y, reps=args.reps)
      row[f"stream_s_block{block}"] = s
      row[f"s_per_image_block{block}"] = s / (n * k)
    call = jax.jit(heads.make_head_evaluator(head, train_per_class=15, block=max(args.blocks)))
    row["evaluation_s"] = _time(call, reg, classes, feats, reps=args.reps)
    out["heads"][name] = row
    print(f"{name:17s} state {row['state_bytes'] / 2**20:7.1f} MiB  " + "  ".join(
        f"block {b}: {1e3 * row[f's_per_image_block{b}']:.3f} ms/image" for b in args.blocks)
        + f"  {args.runs} runs x {n} classes: {row['evaluation_s']:.1f} s", flush=True)
  output.write(args.out, out)


if __name__ == "__main__":
  main()
