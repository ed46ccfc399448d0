"""Every results table, inline figure and plot, generated from the results store.

  python report.py            # rewrite the generated tables and figures in
                              # README.md, results/README.md, docs/findings.md,
                              # and results/compare/
  python report.py --check    # exit 1 if a committed table or figure differs from the records
  python report.py --runs_test=results/A,results/B --at=600   # t-test over final runs

The rows are the specs below: each names the fields a record must have
(anml_jax/results/record.py: ``describe``); the store picks, per N and seed, the record
with the fullest protocol. The tables stand between ``<!-- NAME:start -->``
and ``<!-- NAME:end -->`` markers, the inline figures between
``<!-- fig NAME -->`` and ``<!-- /fig -->`` (:data:`FIGURES`); the text around
them is written by hand and quotes no measured number itself.
"""
import functools
import itertools
import json
import os
import sys

from absl import flags

from anml_jax import checkpointing, cli, configs, data, reporting
from anml_jax.results import store
from anml_jax.results.store import Spec

REPO = os.path.dirname(os.path.abspath(__file__))
ALL_N = (10, 50, 75, 100, 200, 300, 400, 500, 600)
README_N = (10, 50, 100, 200, 400, 600)

_DRAWER = (("split", "drawer"),)
_ANML = (("method", "anml"), ("steps", 20000), ("first_order", False),
         ("zap", "trajectory"), *_DRAWER, ("finetune", "pln/head"), ("learner", "adam"))
_ANML_FO = (("method", "anml"), ("steps", 20000), ("first_order", True), ("zap", "trajectory"),
            *_DRAWER, ("finetune", "pln/head"))
_ANML_FO_NORESET = (("method", "anml"), ("steps", 20000), ("first_order", True), ("zap", "none"),
                    *_DRAWER, ("finetune", "pln/head"))
_OML = (("method", "oml"), ("steps", 20000), ("zap", "trajectory"), *_DRAWER,
        ("learner", "adam"))
# The shipped streamhead: ANML's parameters, then 600 steps of 100-way episodes.
_STREAMHEAD_ANML = (("method", "streamhead"), ("gate", True), ("init", "anml_omniglot.npz"),
                    ("steps", 600))
_PRETRAIN = (("method", "pretrain"), ("steps", 2000), ("zap", "none"), *_DRAWER,
             ("finetune", "pln/head"), ("learner", "adam"))


def _streamhead_scratch(gate: bool) -> tuple:
  """The streamhead from a fresh initialisation at ANML's 20,000 steps (the
  default 30 ways x (4 + 3)), with or without ANML's gate."""
  return (("method", "streamhead"), ("gate", gate), ("init", None), ("steps", 20000))


def _zapped(scale: str, rotations: int = 1, shift: int = 0) -> tuple:
  """Pretraining zapped every epoch (2,000 steps), Kaiming ``scale`` 'row' or
  'block', on the training classes turned ``rotations`` ways, its images
  moved by up to ``shift`` pixels."""
  return (("method", "pretrain"), ("steps", 2000), ("zap", "epoch"), ("zap_scale", scale),
          ("rotations", rotations), ("shift", shift))


# The rows of the main table: (name in README.md, name in results/README.md,
# spec); a row appears once a record fills one of its cells.
MAIN = (
    ("**ours: ANML** (classifier re-learnt)", "**ANML** (classifier re-learnt)",
     _ANML + (("oracle", False),)),
    ("ours: ANML meta-trained first order (the released code's meta-gradient)",
     "ANML meta-trained first order (released code's meta-gradient)",
     _ANML_FO + (("oracle", False), ("learner", "adam"))),
    ("ours: ANML i.i.d. oracle (upper bound)", "ANML oracle (i.i.d.)",
     _ANML + (("oracle", True),)),
    ("ours: OML (its PLN re-learnt)", "OML (PLN re-learnt)",
     _OML + (("finetune", "pln"), ("oracle", False))),
    ("ours: OML, only its last layer re-learnt", "OML, last layer re-learnt",
     _OML + (("finetune", "pln/head"), ("oracle", False))),
    (None, "OML oracle (i.i.d., PLN re-learnt)", _OML + (("finetune", "pln"), ("oracle", True))),
    ("ours: pretrain-and-transfer (classifier re-learnt)", "pretrain (classifier re-learnt)",
     _PRETRAIN + (("oracle", False),)),
    (None, "pretrain oracle (i.i.d.)", _PRETRAIN + (("oracle", True),)),
    ("ours: scratch (everything re-learnt)", "scratch (everything re-learnt)",
     (("method", "scratch"), *_DRAWER, ("oracle", False), ("learner", "adam"))),
    ("ours: ASB with zapping, no meta-gradient (classifier re-learnt)",
     "ASB with zapping (classifier re-learnt)",
     (("method", "asb"), ("steps", 9000), ("zap", "trajectory"), ("finetune", "pln/head"),
      ("oracle", False), ("learner", "adam"), *_DRAWER)),
    ("ours: ASB without zapping, no meta-gradient (classifier re-learnt)",
     "ASB without zapping (classifier re-learnt)",
     (("method", "asb"), ("steps", 9000), ("zap", "none"), ("finetune", "pln/head"),
      ("oracle", False), ("learner", "adam"), *_DRAWER)),
    ("ours: pretrain-and-transfer zapped every epoch (classifier re-learnt)",
     "pretrain zapped every epoch (classifier re-learnt)",
     _zapped("row") + (("finetune", "pln/head"), ("oracle", False), ("learner", "adam"),
                        *_DRAWER)),
    ("ours: ANML's NM output, one-pass closed-form Gaussian head (no Adam, no order effect)",
     "ANML's NM output, one-pass shared-covariance Gaussian head",
     _ANML[:-1] + (("learner", "gaussian"), ("features", "context"))),
    ("ours: pretrain zapped every epoch, one-pass closed-form Gaussian head",
     "pretrain zapped every epoch, one-pass shared-covariance Gaussian head",
     _zapped("row") + (("learner", "gaussian"), ("features", "head_input"))),
    ("ours: pretrain zapped every epoch at Frati et al.'s block std, one-pass Gaussian head",
     "pretrain zapped every epoch (block std), one-pass shared-covariance Gaussian head",
     _zapped("block") + (("learner", "gaussian"), ("features", "head_input"))),
    ("ours: the same, each image learnt and scored as 9 views (its one-pixel moves)",
     "pretrain zapped every epoch (block std), one-pass shared-covariance Gaussian head, 9 views",
     _zapped("block") + (("learner", "gaussian"), ("features", "head_input"), ("views", 9))),
    ("ours: the same, pretrained on its images moved up to 2 pixels each way",
     "pretrain zapped every epoch (block std) on images moved up to 2 pixels, one-pass "
     "shared-covariance Gaussian head, 9 views",
     _zapped("block", shift=2) + (("learner", "gaussian"), ("features", "head_input"),
                                  ("views", 9))),
)

_SEQ = (("oracle", False), ("learner", "adam"), *_DRAWER)
_HEAD, _ALL = (("finetune", "pln/head"),), (("finetune", "nm+pln"),)
_ASB = (("method", "asb"), ("steps", 9000))


def _zapping_specs() -> list[Spec]:
  """Issue 23's table, {without, with zapping} x {i.i.d. pretraining, ASB,
  ANML}: the classifier re-learnt, then the whole network ("unfrozen"); and
  ANML under the random split of the drawings. The unzapped pretrain row is
  the CPU runs, whose recipe the zapped ones repeat with ``zap=epoch``."""
  rows = []
  for how, relearnt in (("classifier re-learnt", _HEAD), ("everything re-learnt", _ALL)):
    rows += [
        Spec(f"pretrain (the CPU runs), no zapping ({how})",
             _PRETRAIN[:3] + _cpu_pretrain() + relearnt + _SEQ),
        Spec(f"pretrain, zapping every epoch, Kaiming per row ({how})",
             _zapped("row") + relearnt + _SEQ),
        Spec(f"pretrain, zapping every epoch, Frati et al.'s block std ({how})",
             _zapped("block") + relearnt + _SEQ),
        Spec(f"ASB, no zapping ({how})", _ASB + (("zap", "none"),) + relearnt + _SEQ),
        Spec(f"ASB, zapping ({how})", _ASB + (("zap", "trajectory"),) + relearnt + _SEQ),
        Spec(f"ANML second order, its reset ({how})", _ANML[:4] + relearnt + _SEQ),
        Spec(f"ANML first order, its reset ({how})", _ANML_FO[:4] + relearnt + _SEQ),
        Spec(f"ANML second order, no reset ({how})",
             (("method", "anml"), ("steps", 20000), ("first_order", False),
              ("zap", "none")) + relearnt + _SEQ),
        Spec(f"ANML first order, no reset ({how})", _ANML_FO_NORESET[:4] + relearnt + _SEQ)]
  rows.append(Spec("ANML second order, its reset, random split of the drawings "
                   "(classifier re-learnt)",
                   _ANML[:4] + _HEAD + (("oracle", False), ("learner", "adam"),
                                         ("split", "random"))))
  return rows

HEAD_NAMES = {"prototype": "nearest class mean", "prototype_cosine": "cosine class mean",
              "ridge": "ridge regression", "gaussian": "shared-covariance Gaussian"}


@functools.cache
def _cpu_pretrain() -> tuple:
  """The match of the unzapped pretraining runs on this CPU, by checkpoint:
  the shipped file (seed 9) and every CPU training record of the recipe that
  names the checkpoint it ended with (its summary.json; seeds 10 and 11). The
  GPU run of the same recipe and seed 9 (results/pretrain/, gone) has other
  numbers, so its records, which carry no sha256, must not join them."""
  shas = {checkpointing.fingerprint(os.path.join(REPO, "results", "pretrained",
                                                 "pretrain_omniglot.npz"))}
  root = os.path.join(REPO, "results", "training")
  for run in sorted(os.listdir(root)):
    try:
      summary = json.load(open(os.path.join(root, run, "summary.json")))
      config = json.load(open(os.path.join(root, run, "config.json")))
    except (FileNotFoundError, NotADirectoryError):
      continue            # not a training record (a log), or one without a summary
    if (summary.get("backend") == "cpu" and "checkpoint_sha256" in summary
        and config["method"] == "pretrain" and config["steps"] == 2000
        and config.get("zap") in (None, "none") and not config.get("shift")
        and config.get("rotations", 1) == 1):
      shas.add(summary["checkpoint_sha256"])
  return (("checkpoint_sha256", frozenset(shas)),)


def _heads_specs() -> list[Spec]:
  """ANML's gated features, ANML's NM output, the CPU pretraining runs'
  features (matched by checkpoint, :func:`_cpu_pretrain`: the pretrain rows
  above are of the GPU run, which is gone) and the features meta-trained
  for a closed-form head (streamhead, with and without the gate), and the
  features of issue 23's methods (zapped pretraining, ASB, ANML without its
  reset), each with Adam one image per step (the paper's learner), its
  oracle, and every closed-form head; and under the heads alone (``adam``
  false) the NM outputs, OML's two layers and the untrained network
  (scratch), whose Adam rows, the PLN or everything re-learnt, are the
  main table's."""
  out = []
  for name, base, features, adam in (
      ("ANML gated features", _ANML[:-1], "head_input", True),
      ("ANML NM output", _ANML[:-1], "context", False),
      ("pretrain features (the CPU runs)", _PRETRAIN[:-1] + _cpu_pretrain(), "head_input", True),
      ("streamhead from ANML's parameters, 600 steps on, gated features",
       _STREAMHEAD_ANML, "head_input", True),
      ("streamhead from scratch, stopped at step 500, gated features",
       (("method", "streamhead"), ("gate", True), ("init", None), ("steps", 500)), "head_input",
       True),
      ("streamhead from scratch, ANML's 20,000 steps, gated features",
       _streamhead_scratch(True), "head_input", True),
      ("streamhead from scratch, ANML's 20,000 steps, ungated features",
       _streamhead_scratch(False), "head_input", True),
      ("pretrain zapped every epoch, Kaiming per row: features",
       _zapped("row"), "head_input", True),
      ("pretrain zapped every epoch, Kaiming per row: NM output", _zapped("row"), "context", False),
      ("pretrain zapped every epoch, Frati et al.'s block std: features",
       _zapped("block"), "head_input", True),
      ("pretrain on four 90-degree turns of each class, zapped every epoch, block std: "
       "features", _zapped("block", 4), "head_input", True),
      ("pretrain on images moved up to 2 pixels, zapped every epoch, block std: features",
       _zapped("block", shift=2), "head_input", True),
      ("ANML first order, its reset: gated features", _ANML_FO, "head_input", True),
      ("ANML first order, no reset: gated features", _ANML_FO_NORESET, "head_input", True),
      ("ANML first order, no reset: NM output", _ANML_FO_NORESET, "context", False),
      ("ASB with zapping: features", _ASB + (("zap", "trajectory"),), "head_input", True),
      ("ASB without zapping: features", _ASB + (("zap", "none"),), "head_input", True),
      ("OML: the PLN's hidden layer", _OML[:-1], "head_input", False),
      ("OML: the RLN's output", _OML[:-1], "context", False),
      ("scratch (ANML's network untrained): features", (("method", "scratch"),), "head_input",
       False)):
    if adam:
      out.append(Spec(f"{name}: Adam, one image per step",
                      base + (("learner", "adam"), ("oracle", False))))
      out.append(Spec(f"{name}: Adam, i.i.d. oracle",
                      base + (("learner", "adam"), ("oracle", True))))
    for head, title in HEAD_NAMES.items():
      out += [Spec(f"{name}: {title}{suffix}",
                   base + (("learner", head), ("features", features)) + views)
              for views, suffix in _VIEWS]
  return out


FEATURE_NAMES = {"head_input": "features", "context": "NM output"}
# OML's two layers under those names: its PLN's hidden layer and its RLN.
OML_FEATURE_NAMES = {"head_input": "PLN hidden layer", "context": "RLN output"}
# A closed-form head's views of each image (eval_config.views): the match
# fields beyond the plain one view, and the row names' suffix.
_VIEWS = [((), "")] + [((("views", v),), f", {v} views (one-pixel moves)")
                       for v in data.VIEW_SHIFTS if v > 1]
# A case whose run starts from another's: {case: (that case, how the table names it)}.
_STARTS_FROM = {"streamhead": ("anml", "ANML's")}
COST_BENCH = os.path.join("bench", "results", "cpu_cost_2026-12-03.json")
# The GPU step the README's training times quote (bench/meta_step.py on an H200).
GPU_BENCH = os.path.join("bench", "results", "bench_gpu_vs_torch.json")


def _cost_rows() -> list[tuple]:
  """(name, bench/cost.py case, spec of the Adam record or None, spec of its
  features under the closed-form heads)."""
  rows = [
      ("ANML, second order, its reset", "anml", _ANML[:4], _ANML[:4]),
      ("ANML, first order, its reset", "anml_first_order", _ANML_FO[:4], _ANML_FO[:4]),
      ("ANML, first order, no reset", "anml_first_order", _ANML_FO_NORESET[:4],
       _ANML_FO_NORESET[:4]),
      ("OML (PLN re-learnt)", "oml", _OML[:3] + (("finetune", "pln"),), _OML[:3]),
      ("ASB, no zapping", "asb", _ASB + (("zap", "none"),), _ASB + (("zap", "none"),)),
      ("ASB, zapping", "asb", _ASB + (("zap", "trajectory"),), _ASB + (("zap", "trajectory"),)),
      ("pretrain, no zapping (the CPU runs)", "pretrain",
       _PRETRAIN[:3] + _cpu_pretrain(), _PRETRAIN[:3] + _cpu_pretrain()),
      ("pretrain, zapping every epoch, Kaiming per row", "pretrain",
       _zapped("row"), _zapped("row")),
      ("pretrain, zapping every epoch, block std", "pretrain",
       _zapped("block"), _zapped("block")),
      ("pretrain, zapping every epoch, block std, images moved up to 2 pixels", "pretrain",
       _zapped("block", shift=2), _zapped("block", shift=2)),
      ("streamhead from ANML's parameters (ANML's run, then 600 steps)", "streamhead",
       None, _STREAMHEAD_ANML),
      ("streamhead from scratch, gated", "streamhead_scratch", None, _streamhead_scratch(True)),
      ("streamhead from scratch, ungated", "streamhead_scratch_ungated", None,
       _streamhead_scratch(False))]
  return [(name, case, adam and Spec(name, adam + (("learner", "adam"),) + _DRAWER
                                      + (("oracle", False),)), feats)
          for name, case, adam, feats in rows]


def cost_table(entries, bench: dict | None) -> str:
  """Markdown: each method's training cost on one machine
  (:data:`COST_BENCH`) beside its test accuracy at 600 classes with
  Adam (the paper's learner) and with its best one-pass closed-form head."""
  cases = {r["case"]: r for r in (bench or {}).get("rows", [])}
  marks = store.Marks()
  lines = ["| method | steps | GFLOP / step | PFLOP / run | s / step | hours / run "
           "| test % at 600, Adam | best one-pass head at 600 |", "|---|" + "---|" * 7]
  for name, case, adam, feats in _cost_rows():
    r = cases.get(case)
    cost = ["", "", "", "", ""]
    if r:
      start, label = _STARTS_FROM.get(case, (None, None))
      base = cases.get(start)   # the run it starts from
      hours = r["run_hours"] + (base["run_hours"] if base else 0)
      run_flops = r["run_flops"] + (base["run_flops"] if base else 0)
      cost = [f"{r['run_steps']:,}" + (f" + {label}" if start else ""),
              f"{r['flops_per_step'] / 1e9:.1f}", f"{run_flops / 1e15:.3f}",
              f"{r['s_per_step']:.2f}", f"{hours:.1f}"]
    c = adam and store.cell(entries, adam, 600)
    acc = f"{c.mean:.1f} ± {c.std:.1f}{marks.of(c)}" if c else ""
    best = None
    for head, title in HEAD_NAMES.items():
      names = OML_FEATURE_NAMES if ("method", "oml") in feats else FEATURE_NAMES
      for (features, where), (views, suffix) in itertools.product(names.items(), _VIEWS):
        h = store.cell(entries, Spec(name, feats + (("learner", head), ("features", features))
                                     + views), 600)
        if h and (best is None or h.mean > best[0].mean):
          best = (h, f"{title}, {where}{suffix}")
    head_text = f"{best[0].mean:.1f} ± {best[0].std:.1f}{marks.of(best[0], 'head')} ({best[1]})" \
        if best else ""
    lines.append(f"| {name} | " + " | ".join(cost + [acc, head_text]) + " |")
  if bench:
    lines.append("\nSteps and FLOPs: bench/flops.py's analytic count; s / step: "
                 f"`{bench['provenance']['command']}` "
                 f"on {bench['cpu']} ({bench['cpu_count']} cores, dense float32 matmul "
                 f"{bench['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s), the machine otherwise quiet; "
                 "hours / run: steps x s / step.")
  notes = marks.notes()
  return "\n".join(lines) + ("\n\n" + notes if notes else "")


def _comparisons() -> list[tuple[Spec, Spec]]:
  """The pairs of rows the results text compares, at 600 classes."""
  heads = lambda zap, learner, scale="row", rotations=1, shift=0: Spec(
      f"pretrain{' on four turns of each class' if rotations > 1 else ''}"
      f"{f' on images moved up to {shift} pixels' if shift else ''}, "
      f"{f'zapping every epoch ({scale} std)' if zap else 'no zapping'}: "
      f"{HEAD_NAMES[learner]}",
      (_zapped(scale, rotations, shift) if zap else
       (("method", "pretrain"), ("steps", 2000), ("zap", "none"), ("rotations", 1)))
      + (("learner", learner), ("features", "head_input")))
  views9 = lambda spec: Spec(spec.name + ", 9 views", spec.match + (("views", 9),))
  adam = lambda name, match: Spec(name, match + _HEAD + _SEQ)
  asb = lambda zap: adam(f"ASB, {'zapping' if zap else 'no zapping'}",
                         _ASB + (("zap", "trajectory" if zap else "none"),))
  asb_gaussian = lambda zap: Spec(
      f"ASB, {'zapping' if zap else 'no zapping'}: shared-covariance Gaussian",
      _ASB + (("zap", "trajectory" if zap else "none"), ("learner", "gaussian"),
              ("features", "head_input")))
  anml = adam("ANML second order", _ANML[:4])
  pretrain = adam("pretrain, no zapping (the CPU runs)", _PRETRAIN[:3] + _cpu_pretrain())
  row = adam("pretrain, zapping every epoch (row std)", _zapped("row"))
  return [
      (anml, adam("ANML first order", _ANML_FO[:4])),
      (Spec("ANML, random split of the drawings", _ANML[:4] + _HEAD + (
          ("oracle", False), ("learner", "adam"), ("split", "random"))), anml),
      (heads(True, "prototype"), heads(False, "prototype")),
      (heads(True, "gaussian"), heads(False, "gaussian")),
      (heads(True, "prototype", "block"), heads(True, "prototype")),
      (heads(True, "gaussian", "block"), heads(True, "gaussian")),
      (heads(True, "gaussian", "block", 4), heads(True, "gaussian", "block")),
      (views9(heads(True, "gaussian", "block")), heads(True, "gaussian", "block")),
      (heads(True, "gaussian", "block", shift=2), heads(True, "gaussian", "block")),
      (views9(heads(True, "gaussian", "block", shift=2)),
       views9(heads(True, "gaussian", "block"))),
      (adam("pretrain, zapping every epoch (block std)", _zapped("block")), row),
      (row, pretrain),
      (asb(True), asb(False)),
      (anml, asb(True)),
      (anml, asb(False)),
      (asb(False), pretrain),
      (asb_gaussian(True), asb_gaussian(False)),
      (asb_gaussian(False), heads(False, "gaussian")),
      (adam("ANML first order, no reset", _ANML_FO_NORESET[:4]),
       adam("ANML first order, its reset", _ANML_FO[:4]))]


def comparisons_table(entries, n: int = 600, keep=lambda a, b: True) -> str:
  """Markdown: each pair of :func:`_comparisons` that ``keep(a, b)`` keeps
  and whose records exist at ``n``, its difference, Welch's test over training seeds where each side
  has two or more, and a test over the meta-test runs of one seed a side
  (:func:`store.runs_test`: paired when both drew the same classes)."""
  lines = [f"| A against B, at {n} classes | A | B | A − B | seeds | over seeds | "
           "over the meta-test runs of one seed a side |", "|---|" + "---|" * 6]
  seed = lambda e: store.describe(e.record)["seed"]
  for a, b in filter(lambda pair: keep(*pair), _comparisons()):
    ca, cb = store.cell(entries, a, n), store.cell(entries, b, n)
    if not (ca and cb):
      continue
    w = store.welch(store.seed_means(entries, a, n), store.seed_means(entries, b, n))
    seeds = ("untested: fewer than 2 seeds a side" if w["p"] is None
             else f"Welch p = {w['p']:.2g}")
    # one seed a side: the same seed where both sides have it, else each side's first
    common = [(x, y) for x in ca.entries for y in cb.entries if seed(x) == seed(y)]
    ea, eb = common[0] if common else (ca.entries[0], cb.entries[0])
    r = store.runs_test(ea.record, eb.record, n)
    lines.append(
        f"| {a.name} against {b.name} | {ca.mean:.1f} | {cb.mean:.1f} | {w['diff']:+.1f} | "
        f"{w['seeds'][0]} / {w['seeds'][1]} | {seeds} | seed {seed(ea)} / {seed(eb)}, "
        f"{r['test']}: {r['diff']:+.2f} ± {r['se']:.2f}, p = {r['p']:.2g} |")
  return "\n".join(lines)


def _published_rows() -> list[tuple]:
  p = reporting.PUBLISHED
  pct = lambda v: f"{100 * v:.1f}"
  return [
      ("paper: ANML / its oracle",
       {600: f"{pct(p['ANML (paper)'][600])} / {pct(p['ANML oracle (paper)'][600])}"}),
      ("paper: OML / OML with its last layer re-learnt",
       {600: f"{pct(p['OML (paper)'][600])} / "
             f"{pct(p['OML, last layer re-learnt (paper)'][600])}"}),
      ("higherANML (authors' re-implementation, 30,000 steps)",
       {n: f"{100 * v:.0f}" for n, v in p["higherANML (reported)"].items()}),
  ]


# The files whose tables and inline figures report.py writes.
DOCS = ("README.md", "results/README.md", "docs/findings.md")
# The README's table: at most 8 rows (issue 57), by their results/README.md names.
README_ROWS = ("**ANML** (classifier re-learnt)", "ANML oracle (i.i.d.)", "OML (PLN re-learnt)",
               "pretrain (classifier re-learnt)",
               "ANML's NM output, one-pass shared-covariance Gaussian head",
               "pretrain zapped every epoch (block std) on images moved up to 2 pixels, one-pass "
               "shared-covariance Gaussian head, 9 views")
# docs/findings.md, "Does ANML reproduce the paper?" and "First against second order".
REPRODUCE_ROWS = ("**ANML** (classifier re-learnt)", "ANML oracle (i.i.d.)",
                  "OML (PLN re-learnt)", "OML, last layer re-learnt",
                  "OML oracle (i.i.d., PLN re-learnt)", "pretrain (classifier re-learnt)",
                  "pretrain oracle (i.i.d.)", "scratch (everything re-learnt)")
ORDER_ROWS = ("**ANML** (classifier re-learnt)",
              "ANML meta-trained first order (released code's meta-gradient)")


def _main(name: str) -> Spec:
  """The main table's row of that results/README.md name."""
  return next(Spec(name, m) for _, full, m in MAIN if full == name)


def _nm_specs() -> list[Spec]:
  """docs/findings.md, "What does neuromodulation buy?": the gated ANML against
  OML (meta-learnt, no gate), ASB without zapping (ungated, no meta-gradient),
  and the gated and ungated streamheads; then ANML's gated features and its NM
  output under the Gaussian head."""
  g = lambda name, base, features: Spec(name, base + (("learner", "gaussian"),
                                                      ("features", features)))
  return [_main("**ANML** (classifier re-learnt)"), _main("OML (PLN re-learnt)"),
          _main("OML, last layer re-learnt"), _main("ASB without zapping (classifier re-learnt)"),
          g("ANML gated features, Gaussian head", _ANML[:-1], "head_input"),
          g("ANML NM output, Gaussian head", _ANML[:-1], "context"),
          g("OML RLN output, Gaussian head", _OML[:-1], "context"),
          g("streamhead from scratch, gated, Gaussian head", _streamhead_scratch(True),
            "head_input"),
          g("streamhead from scratch, ungated, Gaussian head", _streamhead_scratch(False),
            "head_input")]


VALIDATION_N = (10, 50, 100, 200)


def _validation_specs() -> list[Spec]:
  """docs/findings.md, "Clean selection": each pretraining recipe trained
  without the validation alphabets, on validation streams of them
  (``stream_classes`` 'validation'), under each closed-form head."""
  val = (("stream_classes", "validation"), ("features", "head_input"))
  out = []
  for name, base in (("pretrain zapped every epoch (block std), images moved up to 2 pixels",
                      _zapped("block", shift=2)),
                     ("pretrain zapped every epoch (block std)", _zapped("block"))):
    for head, title in HEAD_NAMES.items():
      out += [Spec(f"{name}: {title}{suffix}", base + (("learner", head),) + val + views)
              for views, suffix in _VIEWS]
  return out


def _fmt(c) -> str:
  """An inline figure: ``mean ± std %`` and the seeds it rests on."""
  return f"{c.mean:.1f} ± {c.std:.1f} %" + (f" ({c.seeds} seeds)" if c.seeds > 1 else "")


# Inline figures: {name: (results/README.md row name, N)}; the published ones
# are reporting.PUBLISHED's.
FIGURES = {
    "anml-600": ("**ANML** (classifier re-learnt)", 600),
    "anml-oracle-600": ("ANML oracle (i.i.d.)", 600),
    "anml-fo-600": ("ANML meta-trained first order (released code's meta-gradient)", 600),
    "oml-600": ("OML (PLN re-learnt)", 600),
    "pretrain-600": ("pretrain (classifier re-learnt)", 600),
    "pretrain-zap-600": ("pretrain zapped every epoch (classifier re-learnt)", 600),
    "asb-600": ("ASB without zapping (classifier re-learnt)", 600),
    "asb-zap-600": ("ASB with zapping (classifier re-learnt)", 600),
    "nm-gaussian-600": ("ANML's NM output, one-pass shared-covariance Gaussian head", 600),
    "zap-gaussian-600": ("pretrain zapped every epoch, one-pass shared-covariance Gaussian head",
                         600),
    "block-gaussian-600": ("pretrain zapped every epoch (block std), one-pass shared-covariance "
                           "Gaussian head", 600),
    "block-views9-600": ("pretrain zapped every epoch (block std), one-pass shared-covariance "
                         "Gaussian head, 9 views", 600),
    "best-600": ("pretrain zapped every epoch (block std) on images moved up to 2 pixels, "
                 "one-pass shared-covariance Gaussian head, 9 views", 600),
}
PUBLISHED_FIGURES = {"paper-anml-600": ("ANML (paper)", 600),
                     "paper-anml-oracle-600": ("ANML oracle (paper)", 600),
                     "paper-oml-600": ("OML (paper)", 600)}


def figure_values(entries, bench: dict | None = None, gpu: dict | None = None) -> dict:
  """{inline figure name: its text}: :data:`FIGURES` from the records (a
  missing one reads "(not measured)"), the published figures, and the
  training times from the benchmarks ``bench`` (:data:`COST_BENCH`, hours of
  a run on its CPU) and ``gpu`` (:data:`GPU_BENCH`, the second-order step on
  one GPU, times the default config's steps)."""
  out = {}
  cases = {r["case"]: r for r in (bench or {}).get("rows", [])}
  for case in ("anml", "pretrain"):
    if case in cases:
      h = cases[case]["run_hours"]
      out[f"cpu-time-{case}"] = f"{h:.1f} h" if h >= 1 else f"{60 * h:.0f} min"
  if gpu:
    row = next(r for r in gpu["rows"] if not r["first_order"] and r["meta_batch"] == 1)
    steps = configs.get_config("default", "anml").steps
    out["gpu-minutes-anml"] = (f"{steps / row['steps_per_s'] / 60:.1f} min on one "
                               f"{gpu['device']}")
  for name, (row, n) in FIGURES.items():
    c = store.cell(entries, _main(row), n)
    out[name] = _fmt(c) if c else "(not measured)"
  for name, (key, n) in PUBLISHED_FIGURES.items():
    out[name] = f"{100 * reporting.PUBLISHED[key][n]:.1f} %"
  return out


def blocks(entries, bench: dict | None = None) -> dict:
  """{(file, block name): generated markdown}; ``bench``: the training cost
  benchmark's JSON (:data:`COST_BENCH`), if there is one."""
  has = lambda spec: any(store.cell(entries, spec, n) for n in ALL_N)
  rows = lambda names: [s for s in map(_main, names) if has(s)]
  full = [s for s in (Spec(f, m) for _, f, m in MAIN) if has(s)]
  present = [s for s in _heads_specs() if has(s)]
  zapping = [s for s in _zapping_specs() if has(s)]
  pairs = lambda keep: comparisons_table(entries, keep=keep)
  return {
      ("README.md", "results-table"): store.table(
          entries, rows(README_ROWS), README_N, std="seeds", published=_published_rows()[:2]),
      ("results/README.md", "results-table"): store.table(
          entries, full, ALL_N, published=_published_rows()),
      ("docs/findings.md", "reproduce-table"): store.table(
          entries, rows(REPRODUCE_ROWS), README_N, published=_published_rows()),
      ("docs/findings.md", "order-table"): store.table(entries, rows(ORDER_ROWS), ALL_N),
      ("docs/findings.md", "order-tests"): pairs(lambda a, b: b.name == "ANML first order"),
      ("docs/findings.md", "nm-table"): store.table(
          entries, [s for s in _nm_specs() if has(s)], README_N),
      ("docs/findings.md", "heads-table"): store.table(entries, present, ALL_N),
      ("docs/findings.md", "zapping-table"): store.table(entries, zapping, ALL_N),
      ("docs/findings.md", "cost-table"): cost_table(entries, bench),
      ("docs/findings.md", "comparisons-table"): comparisons_table(entries),
      ("docs/findings.md", "validation-table"): store.table(
          entries, [s for s in _validation_specs() if has(s)], VALIDATION_N,
          header="N validation classes"),
  }


def figures(entries, out_dir: str) -> None:
  """results/compare: every main row's accuracy against N (with the
  published figures), its forgetting, and their table.md."""
  views = [v for v in (store.view(entries, Spec(f, m), ALL_N) for _, f, m in MAIN) if v]
  reporting.write_report(out_dir, views)


def define(fv, argv):
  del argv
  flags.DEFINE_string("results", os.path.join(REPO, "results"), "the results store",
                      flag_values=fv)
  flags.DEFINE_bool("check", False, "write nothing; exit 1 if a generated table "
                    "differs from the committed one", flag_values=fv)
  flags.DEFINE_bool("figures", True, "also redraw results/compare/", flag_values=fv)
  flags.DEFINE_list("runs_test", None, "two record folders A,B: print a test of their "
                    "final runs at --at (paired if they drew the same classes, else "
                    "Welch's) and write nothing", flag_values=fv)
  flags.DEFINE_integer("at", 600, "the N of --runs_test", flag_values=fv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    fv = cli.parse("report.py", argv, __doc__, define)
    if fv is None:
      return 0
    if fv.runs_test:
      a, b = (json.load(open(os.path.join(p, "results.json"))) for p in fv.runs_test)
      r = store.runs_test(a, b, fv.at)
      print(f"N = {fv.at}: {fv.runs_test[0]} - {fv.runs_test[1]} = {r['diff']:+.2f} ± "
            f"{r['se']:.2f} points ({r['test']} t = {r['t']:.2f}, p = {r['p']:.4f}, "
            f"runs {r['runs'][0]} and {r['runs'][1]})")
      return 0
    entries = store.load(fv.results)
    stale = []
    bench_path = os.path.join(REPO, COST_BENCH)
    bench = json.load(open(bench_path)) if os.path.exists(bench_path) else None
    gpu = json.load(open(os.path.join(REPO, GPU_BENCH)))
    generated = blocks(entries, bench)
    values = figure_values(entries, bench, gpu)
    for name in DOCS:
      path = os.path.join(REPO, name)
      text = open(path).read()
      new = store.fill_figures(text, values)
      for (doc, key), body in generated.items():
        if doc == name:
          new = store.replace_block(new, key, body)
      changed = [key for (doc, key), body in generated.items()
                 if doc == name and store.block(text, key) != body.strip("\n")]
      if new != text:
        stale.append(f"{name} ({', '.join(changed) or 'inline figures'})")
        if not fv.check:
          reporting.atomic_write(path, new)
    if fv.check:
      if stale:
        return cli.fail(f"generated tables or figures differ from the records: "
                        f"{', '.join(stale)}; "
                        "run python report.py")
      print(f"{len(entries)} records; every generated table is current")
      return 0
    if fv.figures:
      figures(entries, os.path.join(fv.results, "compare"))
    print(f"{len(entries)} records; rewrote: {', '.join(stale) or 'nothing'}")
  except ValueError as e:
    return cli.fail(e)
  return 0


if __name__ == "__main__":
  sys.exit(main())
