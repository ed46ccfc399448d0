"""Meta-train ANML (or the OML / pretraining baselines) on Omniglot.

  python train.py --workdir=runs/anml                                  # the paper's run
  python train.py --workdir=/tmp/s --config=configs/anml.py:smoke      # seconds on CPU
  python train.py --workdir=runs/anml --resume                         # continue exactly
  python train.py --workdir=runs/oml --config=configs/oml.py --config.steps=5000

The run folder gets config.json (the full config), metrics.jsonl, tb/,
checkpoints/, meta_training.png and provenance.jsonl (one line per start).
"""
import json
import os
import sys

import jax
from absl import flags

from anml_jax import (
  checkpointing,
  cli,
  configs,
  data,
  models,
  provenance,
  reporting,
  sharding,
  training,
)


def define(fv, argv):
  flags.DEFINE_string("workdir", None, "run folder (created)", flag_values=fv)
  cli.define_config(fv, argv, "config", cli.config_path(__file__, "anml.py"),
                    "config file[:variant], e.g. configs/oml.py:smoke; override "
                    "fields with --config.KEY=VALUE")
  flags.DEFINE_bool("resume", False, "continue the run in --workdir with its saved "
                    "config.json (--config.KEY=VALUE still overrides); a --workdir "
                    "without one is an error", flag_values=fv)
  flags.DEFINE_bool("progress", True, "show a progress bar (--noprogress: none)",
                    flag_values=fv)
  cli.define_data_flags(fv)
  flags.DEFINE_bool("distributed", False, "multi-host: call jax.distributed.initialize "
                    "first (cluster auto-detected, or the three flags below)",
                    flag_values=fv)
  flags.DEFINE_string("coordinator", None, "host:port of process 0", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "processes in the job", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "this process's index", flag_values=fv)


def run_config(fv):
  """The config to train: the saved one with --resume (overrides applied and
  reported), else the --config file's."""
  saved = os.path.join(fv.workdir, "config.json")
  if fv.resume and not os.path.isfile(saved):
    raise cli.UsageError(
        f"--resume: {fv.workdir} holds no run to continue (no config.json); check "
        "the folder's name, or drop --resume to start a new run there")
  if not fv.resume:
    return fv.config
  if fv["config"].present:
    raise cli.UsageError(
        f"--resume continues {saved}; drop --config "
        "(change single values with --config.KEY=VALUE), or train the new config "
        "in another --workdir")
  with open(saved) as f:
    cfg = configs.from_dict(json.load(f))
  for path, value in cli.overrides(fv, "config").items():
    before = models.get_path(cfg, path.split("."))
    if before != value:
      print(f"note: resuming with {path} = {value!r} (was {before!r})", file=sys.stderr)
    cli.set_path(cfg, path, value)
  return cfg


def run(fv, argv):
  """Trains the run the parsed flags ``fv`` describe."""
  cfg = run_config(fv)
  configs.validate(cfg)
  configs.fits_drawings(cfg, data.DRAWINGS)   # Omniglot's (and its stand-in's), before loading
  dataset = cli.load_dataset(fv, raw=True)             # uint8 on the device
  if cfg.validation_alphabets:                         # never seen: kept for validation
    dataset = data.hold_out(dataset, cfg.validation_alphabets)
  images = dataset.background
  training.train(cfg, fv.workdir, images, resume=fv.resume, progress=fv.progress,
                 provenance=provenance.record(["train.py", *argv]))
  if jax.process_index() == 0:
    reporting.plot_training(os.path.join(fv.workdir, "metrics.jsonl"),
                            os.path.join(fv.workdir, "meta_training.png"))


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    fv = cli.parse("train.py", argv, __doc__, define, required=("workdir",))
    if fv is None:
      return 0
    if fv.distributed:
      sharding.initialize_distributed(fv.coordinator, fv.num_processes, fv.process_id)
    if jax.process_index() == 0:    # one process at a time in a workdir
      with cli.exclusive(fv.workdir, "train.py"):
        run(fv, argv)
    else:
      run(fv, argv)
  except (ValueError, FileExistsError, data.DataError, checkpointing.CheckpointError,
          training.TrainingDiverged) as e:
    return cli.fail(e)
  print(f"done: {fv.workdir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
