"""Meta-train ANML (or the OML / pretraining baselines) on Omniglot.

  python train.py --workdir runs/anml                      # the paper's run
  python train.py --workdir /tmp/s --config smoke          # seconds on CPU
  python train.py --workdir runs/anml --resume             # continue exactly
  python train.py --workdir runs/oml --method oml --set steps=5000
"""
import argparse
import ast
import json
import os
import sys

import jax

from anml_jax import configs, data, reporting, sharding, training


def parse_overrides(cfg, items):
  """Applies ``key=value`` overrides (dotted keys, Python literals)."""
  for item in items or []:
    if "=" not in item:
      raise SystemExit(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node, *path = key.split(".")
    target = cfg
    for p in [node] + path[:-1] if path else []:
      target = target[p]
    leaf = path[-1] if path else node
    if leaf not in target:
      raise SystemExit(f"--set: unknown config key {key!r}")
    target[leaf] = tuple(value) if isinstance(target[leaf], tuple) else value
  return cfg


def load_images(args):
  if args.data_source == "synthetic":
    return data.synthetic_omniglot(args.seed_data).background
  return data.load_omniglot(args.omniglot_dir, source=args.data_source,
                            cache_dir=args.cache_dir).background


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run folder (created)")
  p.add_argument("--config", default="default", choices=configs.NAMES)
  p.add_argument("--method", default="anml", choices=configs.METHODS)
  p.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="override a config value, e.g. --set steps=500")
  p.add_argument("--resume", action="store_true",
                 help="continue the run in --workdir (uses its config.json)")
  p.add_argument("--omniglot-dir", default=None,
                 help="folder with images_background.zip and images_evaluation.zip "
                      "(default $ANML_OMNIGLOT_DIR or ../shared/omniglot)")
  p.add_argument("--data-source", default="zip", choices=("zip", "tfds", "synthetic"))
  p.add_argument("--cache-dir", default=None, help="decoded-array cache")
  p.add_argument("--seed-data", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--distributed", action="store_true",
                 help="multi-host: call jax.distributed.initialize first (cluster "
                      "auto-detected, or --coordinator/--num-processes/--process-id)")
  p.add_argument("--coordinator", default=None, help="host:port of process 0")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  args = p.parse_args(argv)
  if args.distributed:
    sharding.initialize_distributed(args.coordinator, args.num_processes,
                                    args.process_id)

  saved = os.path.join(args.workdir, "config.json")
  if args.resume and os.path.isfile(saved):
    import ml_collections
    with open(saved) as f:
      cfg = ml_collections.ConfigDict(json.load(f))
    cfg.inner_params = tuple(cfg.inner_params)
  else:
    cfg = configs.get_config(args.config, args.method)
  parse_overrides(cfg, args.set)
  try:
    configs.validate(cfg)
    images = load_images(args)
    training.train(cfg, args.workdir, images, resume=args.resume,
                   progress=not args.no_progress)
    if jax.process_index() == 0:
      reporting.plot_training(os.path.join(args.workdir, "metrics.jsonl"),
                              os.path.join(args.workdir, "meta_training.png"))
  except (ValueError, FileExistsError, data.DataError,
          training.TrainingDiverged) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"done: {args.workdir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
