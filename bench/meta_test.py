"""Meta-test throughput: one jitted call of the continual evaluator for N
classes, all runs and learning rates at once (vmapped), as evaluate.py runs it.

  python bench/meta_test.py --classes 600 --runs 10 --lrs 14 --out bench/results/gpu_meta_test.json
  python bench/meta_test.py --classes 600 --runs 1 --lrs 1        # one stream (CPU)
  python bench/meta_test.py --classes 600 --runs 10 --lrs 14 --compile-only  # memory, full call

With only the head re-learnt (ANML's and pretrain's default) the call runs on
features computed once (``--path features``, what evaluate.py does; the time
to compute them is ``context_s``) or, as before, the whole network at every
step (``--path network``).

Reports compile time, wall time of the call, stream steps per second (runs x
lrs x 15 N Adam steps of batch 1, plus the predictions on all 20 N images),
XLA's memory analysis of the compiled call (arguments + temporaries) and the
peak host / device memory. The default network of the paper's sizes, synthetic
images of Omniglot's shape (the cost does not depend on pixel values).
"""
import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import output

from anml_jax import configs, continual, data, learners, methods


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--classes", type=int, default=600)
  p.add_argument("--runs", type=int, default=10)
  p.add_argument("--lrs", type=int, default=14, help="how many of the paper's lrs")
  p.add_argument("--method", default="anml", choices=sorted(methods.REGISTRY))
  p.add_argument("--finetune", nargs="+", metavar="PREFIX", default=None,
                 help="parameter groups fine-tuned (default: the method's)")
  p.add_argument("--path", default="features", choices=("features", "network"),
                 help="with only the head re-learnt: 'features' learns it on "
                      "features computed once (evaluate.py's path), 'network' "
                      "runs the whole network at every step (the path before)")
  p.add_argument("--eval-images", type=int, default=None,
                 help="images in flight over all streams (default: the eval config's)")
  p.add_argument("--class-pool", type=int, default=None,
                 help="evaluation classes to sample from (default: the eval config's, "
                      "650; the stream's cost does not depend on it)")
  p.add_argument("--compile-only", action="store_true")
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)

  cfg = configs.get_config("default", args.method)
  net = methods.network(cfg)
  ecfg = configs.get_eval_config("default")
  args.eval_images = args.eval_images or ecfg.eval_images
  pool = args.class_pool or ecfg.class_pool
  finetune = tuple(args.finetune or methods.get(args.method).finetune)
  params = net.init(jax.random.key(0))
  images = jnp.asarray(data.synthetic(0, background=1, evaluation=pool).evaluation)
  rng = np.random.default_rng(0)
  classes = jnp.asarray(continual.sample_classes(rng, pool, args.classes, args.runs))
  keys = jax.random.split(jax.random.key(1), args.runs)
  lrs = jnp.asarray(configs.PAPER_LRS[:args.lrs], jnp.float32)
  t0 = time.perf_counter()
  net, params, images, ctx = learners.stream_inputs(
      net, params, finetune, images, frozen_features=args.path == "features")
  jax.block_until_ready((images, ctx))
  context_s = time.perf_counter() - t0
  evaluate = jax.jit(continual.make_stream_evaluator(
      net, finetune_params=finetune, train_per_class=ecfg.train_per_class,
      eval_batch=learners.stream_eval_batch(args.eval_images, args.runs, args.lrs)))
  t0 = time.perf_counter()
  compiled = evaluate.lower(params, keys, lrs, classes, images, ctx).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  row = {"classes": args.classes, "class_pool": pool, "runs": args.runs, "lrs": args.lrs,
         "method": args.method, "finetune": list(finetune), "path": args.path,
         "network": net.name,
         "eval_images": args.eval_images,
         "eval_batch_per_stream": learners.stream_eval_batch(args.eval_images,
                                                               args.runs, args.lrs),
         "compile_s": compile_s, "context_s": context_s,
         "xla_argument_bytes": getattr(mem, "argument_size_in_bytes", None),
         "xla_temp_bytes": getattr(mem, "temp_size_in_bytes", None),
         "xla_output_bytes": getattr(mem, "output_size_in_bytes", None)}
  if not args.compile_only:
    t0 = time.perf_counter()
    res = compiled(params, keys, lrs, classes, images, ctx)
    jax.block_until_ready(res)
    wall = time.perf_counter() - t0
    steps = args.runs * args.lrs * ecfg.train_per_class * args.classes
    row.update(wall_s=wall, stream_steps=steps, stream_steps_per_s=steps / wall,
               test_acc_mean=float(np.asarray(res.test).mean()))
  stats = jax.devices()[0].memory_stats() or {}
  row["device_peak_bytes"] = stats.get("peak_bytes_in_use")
  row["host_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(json.dumps(row, indent=1), flush=True)
  output.write(args.out, {"rows": [row]})


if __name__ == "__main__":
  main()
