"""Meta-test saved meta-parameters with the paper's protocol, and compare.

  python evaluate.py --checkpoint runs/anml --out results/anml
  python evaluate.py --scratch --out results/scratch
  python evaluate.py --checkpoint runs/anml --oracle --out results/anml_oracle   # i.i.d.
  python evaluate.py --compare results/anml results/oml results/scratch --out results
  python evaluate.py --merge results/anml_a results/anml_b --out results/anml   # same run, more Ns
"""
import argparse
import json
import os
import sys

import jax

from anml_jax import checkpointing, configs, data, evaluation, reporting, sharding


def write_all(out: str, results_list: list) -> None:
  os.makedirs(out, exist_ok=True)
  reporting.plot_curves(results_list, os.path.join(out, "accuracy_vs_classes.png"))
  reporting.plot_forgetting(results_list, os.path.join(out, "forgetting.png"))
  text = (reporting.table(results_list) + "\n\nPer-class accuracy after the longest stream "
          "(forgetting):\n\n" + reporting.forgetting_table(results_list) + "\n")
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(text)
  print(text)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--checkpoint",
                   help="run folder written by train.py, or a parameter file (.npz) "
                        "written by checkpointing.export_params")
  src.add_argument("--scratch", action="store_true",
                   help="baseline: a freshly initialised ANML network")
  src.add_argument("--compare", nargs="+", metavar="RESULTS_DIR",
                   help="combine finished evaluations into one table and plots")
  src.add_argument("--merge", nargs="+", metavar="RESULTS_DIR",
                   help="join evaluations of one checkpoint done for different Ns")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--method", choices=configs.METHODS, default=None,
                 help="check that the checkpoint is of this method")
  p.add_argument("--eval-config", default="default", choices=("default", "cpu", "smoke"))
  p.add_argument("--model-config", default="default", choices=configs.NAMES,
                 help="architecture of --scratch")
  p.add_argument("--schedule", type=int, nargs="+", help="override the Ns")
  p.add_argument("--runs", type=int)
  p.add_argument("--search-runs", type=int)
  p.add_argument("--lrs", type=float, nargs="+")
  p.add_argument("--seed", type=int)
  p.add_argument("--finetune", nargs="+", metavar="PREFIX",
                 help="parameter groups fine-tuned at meta-test (e.g. pln); "
                      f"default per method: {evaluation.FINETUNE}")
  p.add_argument("--oracle", action="store_true",
                 help="learn each stream's images in a random order (i.i.d.), "
                      "the upper bound of sequential learning")
  p.add_argument("--shard", default="auto", choices=("auto", "off"),
                 help="split the runs over all devices when there are several")
  p.add_argument("--omniglot-dir", default=None)
  p.add_argument("--data-source", default="zip", choices=("zip", "tfds", "synthetic"))
  p.add_argument("--cache-dir", default=None)
  args = p.parse_args(argv)

  if args.compare or args.merge:
    if args.oracle or args.finetune:
      print("error: --oracle and --finetune choose how to evaluate a checkpoint; "
            "--compare and --merge only combine finished evaluations (drop them)",
            file=sys.stderr)
      return 1
    try:
      results = [json.load(open(os.path.join(d, "results.json")))
                 for d in args.compare or args.merge]
      if args.merge:
        results = [reporting.merge_results(results)]
        reporting.write_results(args.out, results[0])
    except FileNotFoundError as e:
      print(f"error: {e.filename} missing: run evaluate.py --out on that folder first",
            file=sys.stderr)
      return 1
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    write_all(args.out, results)
    return 0

  ecfg = configs.get_eval_config(args.eval_config)
  for k in ("schedule", "runs", "search_runs", "lrs", "seed"):
    v = getattr(args, k)
    if v is not None:
      ecfg[k] = tuple(v) if isinstance(v, list) else v
  try:
    if args.data_source == "synthetic":
      omni = data.synthetic_omniglot()
    else:
      omni = data.load_omniglot(args.omniglot_dir, source=args.data_source,
                                cache_dir=args.cache_dir)
    ecfg.class_pool = min(ecfg.class_pool, omni.evaluation.shape[0])
    ecfg.search_pool = min(ecfg.search_pool, omni.background.shape[0])
    if max(ecfg.schedule) > min(ecfg.class_pool, ecfg.search_pool):
      raise ValueError(f"schedule up to {max(ecfg.schedule)} classes but only "
                       f"{ecfg.class_pool} evaluation / {ecfg.search_pool} "
                       "search classes are available")
    if args.scratch:
      cfg = configs.get_config(args.model_config, "anml")
      net = configs.make_network_from_config(cfg)
      params, method, step = net.init(jax.random.key(cfg.seed)), "scratch", 0
    else:
      cfg, net, params, step = checkpointing.load_run(args.checkpoint, args.method)
      method = cfg.method
    extra = {"checkpoint": args.checkpoint, "checkpoint_step": step,
             "model_config": cfg.to_dict()}
    mesh = (sharding.make_mesh() if args.shard == "auto" and jax.device_count() > 1
            else None)
    results = evaluation.meta_test(
        method, net, params, omni, ecfg, finetune=args.finetune, mesh=mesh,
        oracle=args.oracle, on_update=lambda r: reporting.write_results(args.out, {**r, **extra}))
  except (ValueError, data.DataError, checkpointing.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  results.update(extra)
  write_all(args.out, [results])
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
