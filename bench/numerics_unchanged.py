"""Parameters after a few training steps at two code revisions, compared bit for bit.

  python bench/numerics_unchanged.py 5357824 --out bench/results/numerics_unchanged.json

Extracts ``anml_jax/`` of revision ``BASE`` (``git archive``) and, in one
subprocess per revision (so neither import sees the other), trains each case
``--steps`` steps from its fixed seed on the same synthetic images (uint8
where the revision keeps them so, :func:`synthetic`), then
compares every parameter leaf of the two revisions with ``np.array_equal``
(bitwise, on the same machine). It prints and saves, per case, whether all
leaves are equal and the largest absolute difference. Used when a refactor
must not change the numbers (the training step built from parts).
"""
import argparse
import ast
import importlib
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("method=anml", "method=anml,first_order=True", "method=oml",
         "method=pretrain")


def worker(root: str, cases: list[str], steps: int, out: str) -> None:
  """Trains every case ``steps`` steps with ``root``'s anml_jax; saves the
  flattened parameters of each to ``out`` (.npz, keys 'CASE|PATH')."""
  sys.path.insert(0, root)
  import jax
  configs = importlib.import_module("anml_jax.configs")
  data = importlib.import_module("anml_jax.data")
  meta = importlib.import_module("anml_jax.meta")
  methods = importlib.import_module("anml_jax.methods")
  from flax import traverse_util
  saved = {}
  for case in cases:
    kv = dict(p.split("=", 1) for p in case.split(","))
    cfg = configs.get_config("smoke", kv.pop("method"))
    for k, v in kv.items():
      cfg[k] = ast.literal_eval(v)
    cfg.num_train_classes = 40
    cfg.model.num_outputs = 40
    net = methods.network(cfg)
    imgs = jax.numpy.asarray(synthetic(data))
    state = meta.init_state(cfg, net)
    step = methods.get(cfg.method).make_step(cfg, net, None)
    state, _ = jax.jit(meta.make_train_chunk(step, steps))(state, imgs)
    for path, leaf in traverse_util.flatten_dict(state.params, sep="/").items():
      saved[f"{case}|{path}"] = np.asarray(leaf)
  np.savez(out, **saved)


def synthetic(data):
  """The training images as the revision's train.py keeps them: uint8 where
  its loader can (``raw``), else preprocessed float32; the same drawings
  (``data.synthetic`` was ``synthetic_omniglot`` before 2026-11-30)."""
  if hasattr(data, "synthetic"):
    return data.synthetic(0, background=40, evaluation=1, raw=True).background
  try:
    return data.synthetic_omniglot(0, background=40, evaluation=1, raw=True).background
  except TypeError:
    return data.synthetic_omniglot(0, background=40, evaluation=1).background


def run_at(root: str, cases: list[str], steps: int, out: str) -> dict:
  subprocess.run([sys.executable, __file__, "--worker", root, "--steps", str(steps),
                  "--cases", *cases, "--npz", out], check=True, cwd=REPO)
  with np.load(out) as z:
    return {k: z[k] for k in z.files}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("base", nargs="?", help="git revision to compare the working tree with")
  p.add_argument("--cases", nargs="+", default=list(CASES))
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--out", help="JSON file for the comparison")
  p.add_argument("--worker", help=argparse.SUPPRESS)
  p.add_argument("--npz", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.worker:
    return worker(a.worker, a.cases, a.steps, a.npz)
  import output  # here, not above: a worker must import anml_jax from its revision only
  output.claim(a.out)
  if not a.base:
    p.error("give the BASE revision")
  with tempfile.TemporaryDirectory() as tmp:
    base_root = os.path.join(tmp, "base")
    os.makedirs(base_root)
    archive = subprocess.run(["git", "archive", a.base, "anml_jax"], cwd=REPO,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", base_root], input=archive, check=True)
    base = run_at(base_root, a.cases, a.steps, os.path.join(tmp, "base.npz"))
    tree = run_at(REPO, a.cases, a.steps, os.path.join(tmp, "tree.npz"))
  dirty = subprocess.run(["git", "status", "--porcelain", "anml_jax"], cwd=REPO,
                         capture_output=True, text=True).stdout.strip() != ""
  head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                        capture_output=True, text=True).stdout.strip()
  report = {"base": a.base, "head": head, "tree_dirty": dirty, "steps": a.steps,
            "command": "python bench/numerics_unchanged.py " + " ".join(sys.argv[1:]),
            "cases": {}}
  for case in a.cases:
    keys = sorted(k for k in base if k.startswith(case + "|"))
    if keys != sorted(k for k in tree if k.startswith(case + "|")):
      raise SystemExit(f"{case}: the two revisions have different parameter trees")
    equal = all(np.array_equal(base[k], tree[k]) for k in keys)
    diff = max(float(np.max(np.abs(base[k].astype(np.float64) - tree[k]))) for k in keys)
    moved = max(float(np.max(np.abs(base[k]))) for k in keys)
    report["cases"][case] = {"leaves": len(keys), "bitwise_equal": equal,
                             "max_abs_diff": diff, "max_abs_param": moved}
    print(f"{case:40s} leaves {len(keys):3d}  bitwise equal: {equal}  max |diff| {diff:.3g}")
  if a.out:
    output.save(a.out, report)
  if not all(c["bitwise_equal"] for c in report["cases"].values()):
    raise SystemExit(1)


if __name__ == "__main__":
  main()
