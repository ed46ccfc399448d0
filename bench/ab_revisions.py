"""The default meta-step at two code revisions, timed interleaved in one process.

  python bench/ab_revisions.py 2a7ff86 --cases first_order=True first_order=False \\
      --out bench/results/cpu_ab_grey_conv_norm.json

On a shared machine whose speed drifts by 10-25 % between minutes, two
benchmark runs made one after the other do not show a 10 % change. This one
extracts ``anml_jax/`` of revision ``BASE`` (``git archive``), imports it,
compiles a one-meta-step chunk per case, then does the same with the working
tree's ``anml_jax/``; the compiled functions keep their own modules, so both
live in one process. It then times ``--rounds`` rounds, each running every
(revision, case) once, so slow minutes hit both alike. It prints and saves each
case's per-round times, and the per-round ratio BASE / working tree
(``tree_dirty``: whether the working tree's ``anml_jax/`` differs from HEAD).
"""
import argparse
import ast
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_cases(root: str, config: str, cases: list[str]) -> dict:
  """Imports anml_jax from ``root`` and compiles one meta-step per case."""
  for name in [m for m in sys.modules if m == "anml_jax" or m.startswith("anml_jax.")]:
    del sys.modules[name]
  sys.path.insert(0, root)
  try:
    configs = importlib.import_module("anml_jax.configs")
    data = importlib.import_module("anml_jax.data")
    meta = importlib.import_module("anml_jax.meta")
    methods = importlib.import_module("anml_jax.methods")
  finally:
    sys.path.remove(root)
  out = {}
  for case in cases:
    cfg = configs.get_config(config)
    for kv in filter(None, case.split(",")):
      key, value = kv.split("=", 1)
      cfg[key] = ast.literal_eval(value)
    net = methods.network(cfg)
    make = getattr(data, "synthetic", None) or data.synthetic_omniglot   # older revisions
    imgs = jax.numpy.asarray(make(0, background=cfg.num_train_classes, evaluation=1).background)
    state = meta.init_state(cfg, net)
    chunk = jax.jit(meta.make_train_chunk(methods.get(cfg.method).make_step(cfg, net), 1))
    compiled = chunk.lower(state, imgs).compile()
    _, m = compiled(state, imgs)
    out[case] = (compiled, state, imgs, float(m["loss"][-1]))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("base", help="git revision to compare the working tree with")
  p.add_argument("--config", default="default", help="a name of configs.get_config")
  p.add_argument("--cases", nargs="+", default=["first_order=False"],
                 metavar="KEY=VALUE[,KEY=VALUE]", help="config overrides, one case each")
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  archive = subprocess.run(["git", "-C", REPO, "archive", args.base, "anml_jax"],
                           capture_output=True, check=True).stdout
  with tempfile.TemporaryDirectory(prefix="anml_base_") as base_dir:   # compiled, then gone
    subprocess.run(["tar", "-x", "-C", base_dir], input=archive, check=True)
    runs = {"base": compile_cases(base_dir, args.config, args.cases),
            "tree": compile_cases(REPO, args.config, args.cases)}
  times = {(rev, c): [] for rev in runs for c in args.cases}
  for _ in range(args.rounds):
    for (rev, case), ts in times.items():
      compiled, state, imgs, _ = runs[rev][case]
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(state, imgs))
      ts.append(time.perf_counter() - t0)
  rows = []
  for case in args.cases:
    b, t = times[("base", case)], times[("tree", case)]
    ratios = [x / y for x, y in zip(b, t)]
    rows.append({"case": case, "base_s": b, "tree_s": t, "base_over_tree": ratios,
                 "base_loss": runs["base"][case][3], "tree_loss": runs["tree"][case][3]})
    print(f"{case or 'default'}: base {min(b):.3f} s (median {statistics.median(b):.3f}), "
          f"tree {min(t):.3f} s (median {statistics.median(t):.3f}); base/tree per round "
          f"median {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"meta-loss {rows[-1]['base_loss']:.5f} vs {rows[-1]['tree_loss']:.5f}", flush=True)
  if args.out:
    def git(*a):
      return subprocess.run(["git", "-C", REPO, *a], capture_output=True,
                            text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "anml_jax"))
    output.save(args.out, {"base": args.base, "config": args.config, "tree_head": head,
                           "tree_dirty": dirty, "rounds": args.rounds,
                           "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
                           "jax": jax.__version__, "rows": rows})


if __name__ == "__main__":
  main()
