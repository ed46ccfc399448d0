"""Meta-test saved meta-parameters with the paper's protocol, and compare.

  python evaluate.py --checkpoint=runs/anml --out=results/anml
  python evaluate.py --config=configs/scratch.py --out=results/scratch     # untrained
  python evaluate.py --checkpoint=runs/anml --eval_config.oracle --out=results/anml_oracle
  python evaluate.py --checkpoint=runs/anml --eval_config=configs/eval.py:cpu --out=/tmp/q
  python evaluate.py --compare=results/anml,results/oml,results/scratch --out=results
  python evaluate.py --merge=results/anml_a,results/anml_b --out=results/anml   # more Ns

The protocol (Ns, runs, learning rates, what is re-learnt, i.i.d. oracle) is
the --eval_config file's, overridden with --eval_config.KEY=VALUE. The output
folder gets results.json (with a provenance record), results.csv, table.md
and plots. A results.json is never replaced: an --out that holds one is
refused, or, with --resume, the evaluation in it continues at its first
unfinished N (same checkpoint and protocol; the finished N are kept as they
are). A run of several seeds (train.py --config.seeds=K) is evaluated seed by
seed, each its own record in OUT/seed_S/; --resume continues it where it
stopped, a seed not yet begun taking its begun siblings' protocol.
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
  evaluation,
  learners,
  meta,
  methods,
  provenance,
  reporting,
  sharding,
)
from anml_jax.results.record import RESUME_KEYS

SOURCES = ("checkpoint", "config", "compare", "merge")


def define(fv, argv):
  flags.DEFINE_string("checkpoint", None, "run folder written by train.py, or a "
                      "parameter file (.npz) written by checkpointing.export_params",
                      flag_values=fv)
  cli.define_config(fv, argv, "config", None,
                    "evaluate the untrained network of this config file, e.g. "
                    "configs/scratch.py (the scratch baseline)")
  flags.DEFINE_list("compare", None, "finished evaluations (results folders) to "
                    "combine into one table and plots", flag_values=fv)
  flags.DEFINE_list("merge", None, "evaluations of one checkpoint done for different "
                    "Ns, to join into one", flag_values=fv)
  flags.DEFINE_string("out", None, "output folder", flag_values=fv)
  flags.DEFINE_bool("resume", False, "continue the interrupted evaluation in --out "
                    "at its first unfinished N (the same checkpoint; its saved "
                    "protocol unless --eval_config flags are given, which must "
                    "equal it)", flag_values=fv)
  flags.DEFINE_string("method", None, "check that --checkpoint is of this method",
                      flag_values=fv)
  cli.define_config(fv, argv, "eval_config", cli.config_path(__file__, "eval.py"),
                    "meta-test protocol file[:variant] (configs/eval.py:cpu, :quick, :smoke); "
                    "override fields with --eval_config.KEY=VALUE")
  flags.DEFINE_enum("shard", "auto", ["auto", "off"], "split the runs over all "
                    "devices when there are several", flag_values=fv)
  cli.define_data_flags(fv)


def combine(fv) -> int:
  """--compare / --merge: tables and plots of finished evaluations."""
  if fv["eval_config"].present or cli.overrides(fv, "eval_config"):
    raise cli.UsageError("--eval_config chooses how to evaluate a checkpoint; "
                         "--compare and --merge only combine finished evaluations "
                         "(drop it)")
  folders = fv.compare or fv.merge
  if fv.resume:
    raise cli.UsageError("--resume continues an evaluation; --compare and --merge "
                         "only combine finished ones (drop it)")
  redraw = bool(fv.compare) and [os.path.realpath(d) for d in folders] == [
      os.path.realpath(fv.out)]          # a record's own table and plots, redrawn
  if reporting.read_results(fv.out) is not None and not redraw:
    raise cli.UsageError(f"{fv.out} holds an evaluation (results.json), which "
                         f"--{'merge' if fv.merge else 'compare'} would overwrite "
                         "or mix with; give another --out. Nothing was changed.")
  try:
    results = [json.load(open(os.path.join(d, "results.json"))) for d in folders]
  except FileNotFoundError as e:
    raise cli.UsageError(f"{e.filename} missing: run evaluate.py --out on that "
                         "folder first") from None
  if fv.merge:
    results = [reporting.merge_results(results)]
    reporting.write_results(fv.out, results[0])
  print(reporting.write_report(fv.out, results))
  return 0


def existing_record(fv, out: str, begun: bool = False):
  """The record in ``out`` that --resume continues (None for a new one).

  Raises UsageError for an --out holding a record without --resume, and for
  --resume without a record: nothing is replaced, nothing silently restarts.
  ``begun``: ``out`` is one seed of a run of several whose other seeds hold
  records, so under --resume a seed not yet reached starts there."""
  done = reporting.read_results(out)
  if done is not None and not fv.resume:
    ns = ", ".join(str(r["classes"]) for r in done["per_n"])
    raise cli.UsageError(
        f"{out} already holds an evaluation ({done['method']}, N = {ns}); "
        "pass --resume to continue it at its first unfinished N, or give another "
        "--out. Nothing was changed.")
  if done is None and fv.resume and not begun:
    raise cli.UsageError(f"--resume: {out} holds no results.json to continue; "
                         "check the folder's name, or drop --resume to start a new "
                         "evaluation there")
  return done




def _as_read(key: str, value):
  """A record's model_config or protocol as this version reads it (keys added
  since the record was written take the values that reproduce it), so that
  a record made before a new config key still resumes; other fields as
  they are."""
  if key == "model_config" and value is not None:
    return json.loads(configs.from_dict(value).to_json())
  if key == "protocol" and value is not None:
    return json.loads(configs.eval_from_dict(value).to_json())
  return value


def check_resumable(done: dict, out: str, now: dict) -> None:
  """Raises UsageError naming the first of :data:`RESUME_KEYS` in which the
  record ``done`` differs from the evaluation about to run (``now``); a
  record without a checkpoint fingerprint (older ones) is matched by the
  other keys."""
  now = json.loads(json.dumps(now))       # tuples as the record's lists
  done = {k: _as_read(k, v) for k, v in done.items()}
  now = {k: _as_read(k, v) for k, v in now.items()}
  for k in RESUME_KEYS:
    if k == "checkpoint_sha256" and done.get(k) is None:
      continue
    if done.get(k) != now.get(k):
      what = (f"{k} {done.get(k)!r} (now {now.get(k)!r})" if k != "protocol" else
              "protocol: " + ", ".join(
                  f"{f}={done[k].get(f)!r} (now {now[k].get(f)!r})"
                  for f in sorted(set(done[k]) | set(now[k]))
                  if done[k].get(f) != now[k].get(f)))
      raise cli.UsageError(
          f"--resume: {out} holds an evaluation with another {what}; resume it "
          "with the same --checkpoint and --eval_config flags, or give another "
          "--out. Nothing was changed.")


def validation_split(dataset: data.ClassSplit, cfg, ecfg) -> data.ClassSplit:
  """The classes the streams learn: ``dataset`` for the meta-test, or, with
  ``stream_classes='validation'``, the background alphabets ``cfg``'s run
  held out (searched on the background classes it trained on)."""
  if ecfg.stream_classes != "validation":
    return dataset
  if not cfg.validation_alphabets:
    raise cli.UsageError(
        "--eval_config.stream_classes=validation: this checkpoint's run trained on every "
        "meta-training class, so none is left to validate on; train with "
        "--config.validation_alphabets (configs.VALIDATION_ALPHABETS)")
  return data.hold_out(dataset, cfg.validation_alphabets)


def run(fv, argv) -> int:
  """Evaluates (or, with --compare / --merge, combines) what the parsed
  flags ``fv`` name into ``fv.out``; returns the exit status."""
  if fv.compare or fv.merge:
    return combine(fv)
  configs.validate_eval(fv.eval_config)
  if fv.config is not None:
    cfg = fv.config
    if methods.get(cfg.method).trained:
      raise cli.UsageError(f"--config describes the {cfg.method} method, which is "
                           "trained: evaluate a run of it with --checkpoint")
    net = methods.network(cfg)
    params, step = net.init(jax.random.key(cfg.seed)), 0
  else:
    cfg, net, params, step = checkpointing.load_run(fv.checkpoint, fv.method)
  # A run of several seeds: each seed is its own record, in OUT/seed_S.
  seeds = meta.split_seeds(cfg, params)
  jobs = [(c, p, fv.out if len(seeds) == 1 else os.path.join(fv.out, f"seed_{c.seed}"))
          for c, p in seeds]
  begun = [r for r in map(reporting.read_results, (o for _, _, o in jobs)) if r]
  jobs = [(c, p, out, existing_record(fv, out, len(jobs) > 1 and bool(begun)))
          for c, p, out in jobs]
  sha = None if fv.checkpoint is None else checkpointing.fingerprint(fv.checkpoint)
  dataset = cli.load_dataset(fv)
  mesh = (sharding.make_mesh() if fv.shard == "auto" and jax.device_count() > 1
          else None)
  for cfg, params, out, done in jobs:
    ecfg = fv.eval_config
    # --resume alone keeps the record's protocol (a seed not yet begun: its
    # sibling's, so that the seeds of one run share one protocol)
    if fv.resume and not (fv["eval_config"].present or cli.overrides(fv, "eval_config")):
      ecfg = configs.eval_from_dict((done or begun[0])["protocol"])
    classes = validation_split(dataset, cfg, ecfg)
    ecfg.class_pool = min(ecfg.class_pool, classes.evaluation.shape[0])
    ecfg.search_pool = min(ecfg.search_pool, classes.background.shape[0])
    configs.validate_eval(ecfg)
    source = {"checkpoint": fv.checkpoint, "checkpoint_sha256": sha,
              "checkpoint_step": step, "model_config": cfg.to_dict(),
              "provenance": provenance.record(["evaluate.py", *argv])}
    if done is not None:
      check_resumable(done, out, {
          **source, "method": cfg.method, "oracle": bool(ecfg.oracle),
          "finetune": list(learners.get(ecfg.learner).relearnt(cfg.method, net, ecfg)),
          "protocol": ecfg.to_dict()})
      if set(ecfg.schedule) <= {r["classes"] for r in done["per_n"]}:
        print(f"{out}: every N of the schedule is finished; nothing to resume")
        continue
    results = evaluation.meta_test(
        cfg.method, net, params, classes, ecfg, mesh=mesh, source=source, done=done,
        on_update=lambda r, out=out: reporting.write_results(out, r))
    print(reporting.write_report(out, [results]))
    print(f"wrote {out}")
  return 0


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    fv = cli.parse("evaluate.py", argv, __doc__, define, required=("out",))
    if fv is None:
      return 0
    given = [s for s in SOURCES if fv[s].present]
    if len(given) != 1:
      raise cli.UsageError("give exactly one of --checkpoint, --config, --compare, "
                           f"--merge (got {', '.join('--' + s for s in given) or 'none'})")
    with cli.exclusive(fv.out, "evaluate.py"):    # one process at a time in a record
      return run(fv, argv)
  except (ValueError, data.DataError, checkpointing.CheckpointError) as e:
    return cli.fail(e)


if __name__ == "__main__":
  sys.exit(main())
