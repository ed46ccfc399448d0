"""The paper's representation analyses for a checkpoint: gate sparsity (Fig. 5),
t-SNE and KNN (Fig. 6).

  python analyze.py --checkpoint=runs/anml --oml_checkpoint=runs/oml --out=results/analysis
  python analyze.py --checkpoint=runs/anml --out=/tmp/a --classes=100   # a quick look

Writes DIR/analysis.json (sparsity, KNN accuracies, the split), sparsity.png
(3 meta-test test images x their representations, plus the set means) and
tsne.png (10 meta-test classes, first time seen). Meta-test classes are
Omniglot's evaluation set; KNN uses the meta-test split (the first 15 drawings
of each class are the neighbours, the last 5 are classified); sparsity is
measured on the last 5 drawings (the meta-test test images). A run of several
seeds (train.py --config.seeds=K) is analysed seed by seed, each its own record
in DIR/seed_S/; a folder that already holds analysis.json is refused.
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from anml_jax import (
  analysis,
  checkpointing,
  cli,
  configs,
  data,
  meta,
  methods,
  provenance,
  reporting,
)

# The meta-test split: the first drawings of a class are learnt, the rest tested.
TRAIN_PER_CLASS = configs.get_eval_config().train_per_class


def sparsity(reps: dict, prefix: str, rel: float) -> dict:
  """Active fractions (mean over images) and dead units of every ReLU
  representation in ``reps`` ({name: (S, D)}), under the names the analysis
  reports, each also at the relative threshold ``rel``; gate statistics."""
  keys = {"pln_before_gate": ("pln_active_before_gate", "dead_units_before_gate"),
          "pln_after_gate": ("pln_active_after_gate", "dead_units_after_gate"),
          "nm": ("nm_active", "nm_dead_units"),
          "representation": (f"{prefix}_active", f"{prefix}_dead_units")}
  out = {"units": {}}
  for name, (act_key, dead_key) in keys.items():
    if name not in reps:
      continue
    x = reps[name]
    for r, suffix in ((0.0, ""), (rel, f"_above_{rel:g}_max")):
      out[act_key + suffix] = float(analysis.active_fraction(x, r).mean())
      out[dead_key + suffix] = int(analysis.dead_units(x, r))
    out["units"][name] = int(x.shape[-1])
  if "gate" in reps:
    g = np.asarray(reps["gate"])
    out["gate_mean"] = float(g.mean())
    out["gate_below_0.1"] = float((g < 0.1).mean())
    out["gate_histogram_10_bins"] = np.histogram(g, bins=10, range=(0, 1))[0].tolist()
  return out


def define(fv, argv):
  del argv
  flags.DEFINE_string("checkpoint", None, "run folder written by train.py, or a "
                      "parameter file (.npz)", flag_values=fv)
  flags.DEFINE_string("oml_checkpoint", None, "an OML run, for its representation",
                      flag_values=fv)
  flags.DEFINE_string("out", None, "output folder", flag_values=fv)
  flags.DEFINE_integer("classes", None, "meta-test classes analysed (default: the "
                       "whole evaluation set)", flag_values=fv)
  flags.DEFINE_integer("k", 5, "neighbours of the KNN classifier", flag_values=fv)
  flags.DEFINE_integer("tsne_classes", 10, "classes in the t-SNE figure", flag_values=fv)
  flags.DEFINE_float("rel", 0.1, "also count units above this fraction of the "
                     "image's largest activation", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "class sample, random network, t-SNE", flag_values=fv)
  cli.define_data_flags(fv)


def run(args, argv) -> None:
  """Analyses the checkpoint the parsed flags ``args`` name into ``args.out``."""
  cfg, net, params, step = checkpointing.load_run(args.checkpoint)
  # A run of several seeds: each seed is its own record, in OUT/seed_S.
  seeds = meta.split_seeds(cfg, params)
  jobs = [(c, p, args.out if len(seeds) == 1 else os.path.join(args.out, f"seed_{c.seed}"))
          for c, p in seeds]
  for _, _, out in jobs:
    if os.path.exists(os.path.join(out, "analysis.json")):
      raise cli.UsageError(f"{out} already holds an analysis (analysis.json); give "
                           "another --out. Nothing was changed.")
  oml = None
  if args.oml_checkpoint:
    oml = checkpointing.load_run(args.oml_checkpoint, "oml")
  dataset = cli.load_dataset(args)
  pool = dataset.evaluation.shape[0]
  n = args.classes or pool
  if not args.tsne_classes <= n <= pool:
    raise ValueError(f"--classes={n} must lie between --tsne_classes="
                     f"{args.tsne_classes} and the {pool} evaluation classes")
  for c, p, out in jobs:
    analyze_one(args, argv, dataset, n, c, net, p, step, oml, out)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    args = cli.parse("analyze.py", argv, __doc__, define, required=("checkpoint", "out"))
    if args is None:
      return 0
    with cli.exclusive(args.out, "analyze.py"):    # one process at a time in a record
      run(args, argv)
  except (ValueError, data.DataError, checkpointing.CheckpointError) as e:
    return cli.fail(e)
  return 0


def analyze_one(args, argv, dataset, n: int, cfg, net, params, step: int, oml, out: str):
  """Writes the analyses of one seed's ``params`` (``step`` meta-steps of
  ``cfg``) on ``n`` evaluation classes of ``dataset`` into ``out``: the
  record analysis.json (atomically), sparsity.png and tsne.png."""
  arch = methods.get(cfg.method).arch
  pool = dataset.evaluation.shape[0]
  rng = np.random.default_rng(args.seed)
  classes = np.sort(rng.choice(pool, n, replace=False))
  images = jnp.asarray(dataset.evaluation[classes])
  reps = {"": analysis.probe_set(net, params, images)}
  reps["random_init"] = analysis.probe_set(net, net.init(jax.random.key(args.seed)), images)
  if oml is not None:
    reps["oml"] = analysis.probe_set(oml[1], oml[2], images)
  prefix = cfg.method if arch == "oml" else "anml"

  def test_set(r):   # the meta-test test images: (n * 5, D)
    return {k: np.asarray(v[:, TRAIN_PER_CLASS:]).reshape(-1, v.shape[-1]) for k, v in r.items()}

  own = test_set(reps[""])
  result = {"provenance": provenance.record(["analyze.py", *argv]),
            "checkpoint": args.checkpoint, "checkpoint_step": step, "method": cfg.method,
            "training_seed": int(cfg.seed),
            "classes": int(n), "test_images": int(n * (images.shape[1] - TRAIN_PER_CLASS)),
            "seed": args.seed, "relative_threshold": args.rel,
            "sparsity": sparsity(own, prefix, args.rel)}
  if oml is not None:
    o = sparsity({"representation": test_set(reps["oml"])["representation"]}, "oml", args.rel)
    result["sparsity"]["units"].update(oml=o.pop("units")["representation"])
    result["sparsity"].update(o)
    result["oml_checkpoint"], result["oml_checkpoint_step"] = args.oml_checkpoint, oml[3]

  knn = {"k": args.k, "split": f"meta-test split of {n} evaluation classes: drawings "
                               f"1-{TRAIN_PER_CLASS} are the neighbours, drawings "
                               f"{TRAIN_PER_CLASS + 1}-{images.shape[1]} are classified"}
  for name, v in reps[""].items():
    if name != "gate":
      knn[name if arch == "anml" else prefix] = analysis.knn_on_drawings(
          np.asarray(v), args.k, TRAIN_PER_CLASS)
  random_key = "pln_after_gate" if arch == "anml" else "representation"
  knn["random_init"] = analysis.knn_on_drawings(np.asarray(reps["random_init"][random_key]), args.k,
                                                TRAIN_PER_CLASS)
  knn["random_init_representation"] = random_key
  if oml is not None:
    knn["oml"] = analysis.knn_on_drawings(np.asarray(reps["oml"]["representation"]), args.k,
                                         TRAIN_PER_CLASS)
  knn.setdefault("oml", None)
  result["knn"] = knn

  os.makedirs(out, exist_ok=True)
  shown = rng.choice(n, args.tsne_classes, replace=False)
  result["tsne_classes"] = classes[shown].tolist()
  panels = {}
  if oml is not None:
    panels["oml"] = reps["oml"]["representation"]
  for name in ("pln_before_gate", "pln_after_gate", "representation"):
    if name in reps[""]:
      panels[name if arch == "anml" else prefix] = reps[""][name]
  labels = np.repeat(np.arange(args.tsne_classes), images.shape[1])
  reporting.plot_tsne({k: analysis.tsne_2d(np.asarray(v[shown]).reshape(-1, v.shape[-1]), args.seed)
                       for k, v in panels.items()}, labels,
                      os.path.join(out, "tsne.png"), knn)
  if arch == "anml":
    pick = rng.choice(own["gate"].shape[0], 3, replace=False)
    test_images = np.asarray(images[:, TRAIN_PER_CLASS:]).reshape((-1,) + images.shape[2:])
    names = ("pln_before_gate", "gate", "pln_after_gate")
    reporting.plot_sparsity(test_images[pick], {k: own[k][pick] for k in names},
                            {k: own[k].mean(0) for k in names},
                            os.path.join(out, "sparsity.png"), args.rel)
    result["sparsity_images"] = pick.tolist()
  reporting.atomic_write(os.path.join(out, "analysis.json"), json.dumps(result, indent=2))
  print(json.dumps({k: result[k] for k in ("sparsity", "knn")}, indent=1))
  print(f"wrote {out}")


if __name__ == "__main__":
  sys.exit(main())
