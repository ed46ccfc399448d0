"""Cost of the features a closed-form head learns from, with V views per image
(anml_jax/learners.py's ``closed_form_features``), at the meta-test's sizes.

  python bench/view_features.py --views 9 --out bench/results/cpu_view_features_v9.json

One side of the meta-test (``--classes`` classes x 20 drawings; the search
side is 963 background classes) of synthetic images of Omniglot's shape
through the default ANML network (the cost does not depend on pixel or
parameter values): seconds for the whole side, the output's bytes
(C x 20 x V x 2,304 float32) and the process's peak host memory (run one V
per process: the peak is the process's own). Another revision's code is
measured by putting its tree first on the path, e.g. ``git worktree add
/tmp/old REV`` then ``PYTHONPATH=/tmp/old python bench/view_features.py``.
"""
import argparse
import resource
import time

import jax
import numpy as np
import output

import anml_jax
from anml_jax import configs, learners, methods


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--classes", type=int, default=963)
  p.add_argument("--views", type=int, default=9)
  p.add_argument("--which", default="head_input", choices=("head_input", "context"))
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  net = methods.network(configs.get_config())
  params = net.init(jax.random.key(0))
  images = jax.numpy.asarray(np.random.default_rng(0).random(
      (args.classes, 20, 28, 28, 1), np.float32))
  base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  t0 = time.perf_counter()
  feats = jax.block_until_ready(learners.closed_form_features(
      net, params, images, args.which, args.views))
  seconds = time.perf_counter() - t0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  row = {"classes": args.classes, "views": args.views, "which": args.which,
         "code": anml_jax.__file__, "seconds": seconds,
         "output_bytes": int(feats.nbytes), "host_peak_bytes": peak,
         "host_peak_before_bytes": base_rss}
  print(f"{anml_jax.__file__}: V={args.views}: {seconds:.1f} s, "
        f"output {feats.nbytes / 2**30:.2f} GiB, peak host memory {peak / 2**30:.2f} GiB "
        f"({base_rss / 2**30:.2f} GiB before)")
  output.write(args.out, row)


if __name__ == "__main__":
  main()
