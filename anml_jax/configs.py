"""Configurations: ``get_config(name, method)`` and ``get_eval_config(name)``.

``default`` holds the paper's settings (sources in docs/fidelity.md); ``smoke``
is a tiny variant that runs in seconds on a CPU. The method's own values come
from its registry entry (``methods``). The command-line config files in
``configs/`` return these, and ``--config.KEY=VALUE`` overrides them.
"""
import math

import ml_collections

from anml_jax import data, heads, learners, meta, methods, steps

NAMES = ("default", "smoke")
EVAL_NAMES = ("default", "cpu", "quick", "validation", "smoke")
# Keys that configs saved by earlier versions hold and this version derives.
_DROPPED_KEYS = ("arch",)
# Keys added later whose default changes the numbers (up to float rounding):
# a config saved without them gets the value that reproduces its run exactly.
_ADDED_KEYS = {"low_rank_head": False, "rotations": 1, "shift": 0}
# Keys saved by earlier versions that a new key replaces: old key -> function
# of (its value, the method's entry) giving {new key: value}.
_RENAMED_KEYS = {
    # reset_head_rows (bool) became zap; a method that cannot zap (scratch)
    # never used it.
    "reset_head_rows": lambda v, entry: {
        "zap": "trajectory" if v and "trajectory" in entry.zaps else "none"},
}


# The validation split of Omniglot's background set (issue 58): 6 of its 30
# alphabets, 212 of its 964 classes, drawn once with
# numpy.random.default_rng(2026).permutation over the sorted alphabets, taken
# in that order until 200 classes were reached. The 752 other classes train.
VALIDATION_ALPHABETS = ("Armenian", "Hebrew", "Korean", "Latin", "Mkhedruli_(Georgian)",
                        "Sanskrit")
VALIDATION_TRAIN_CLASSES = 752


def get_config(name: str = "default", method: str = "anml") -> ml_collections.ConfigDict:
  entry = methods.get(method)
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; choose one of {NAMES}")
  c = ml_collections.ConfigDict()
  c.name = name
  c.method = method
  c.seed = 9                      # ANML README command: --seed 9
  c.seeds = 1                     # seeds trained in one program: seed, seed + 1, ...
  c.steps = 20000                 # --steps 20000
  c.meta_lr = 1e-3                # --meta_lr 0.001 (Adam)
  c.inner_lr = 0.1                # --update_lr 0.1 (plain SGD)
  c.inner_optimizer = "sgd"       # sgd | adam (meta.INNER_OPTIMIZERS)
  c.traj_len = 20                 # update_step 20: one image per SGD step
  c.remember_size = 64            # random batch of 64 (+ the 20 trajectory images)
  c.meta_batch = 1                # --tasks 1
  c.num_train_classes = 963       # args.classes = range(963)
  # Background alphabets the run never sees, kept for validation streams
  # (data.hold_out; evaluate.py --eval_config.stream_classes=validation);
  # () trains on every class, as the paper does. VALIDATION_ALPHABETS is the
  # project's fixed choice (then num_train_classes=VALIDATION_TRAIN_CLASSES).
  c.validation_alphabets = ()
  # Training classes turned by 0, 90, 180, 270 degrees, each turn a class of
  # its own (data.with_rotations): 1 (the paper's, none) to 4.
  c.rotations = 1
  # i.i.d. pretraining: every batch image moved by a random number of pixels,
  # up to `shift` each way on each axis (data.random_shifts); 0: as it is.
  c.shift = 0
  c.inner_params = ("pln",)       # --rln 7: NM frozen, whole PLN adapted
  c.first_order = False
  c.remat = False
  c.unroll = 1                    # lax.scan unroll of the inner loop
  c.low_rank_head = True          # SGD inner loop: head updates kept as factors
  c.shard = "auto"                # meta-batch over devices: auto | on | off
  # The reset hook (anml_jax/steps.py ZAPS): 'none'; 'trajectory', redraw the
  # head rows of the trajectory's class before each step (ANML's
  # reset_classifer; zapping); 'epoch', every row at each epoch's start. Each
  # method's entry names the ones it can use, and its default.
  c.zap = "none"
  c.zap_scale = "row"             # row: Kaiming std per row; block: Frati et al.'s
  c.pretrain_batch = 64
  # Closed-form-head meta-training (method 'streamhead'): episodes of `ways`
  # classes, `shots` support and `queries` query drawings each; the head
  # (anml_jax/heads.py), its regulariser and the scale of its logits.
  c.ways = 30
  c.shots = 4
  c.queries = 3
  c.head = "prototype"
  c.head_reg = 0.1
  c.head_scale = 1.0
  c.init_params = ""              # start from these parameters (.npz or run); "": fresh
  c.holdout_drawings = 0          # pretrain: drawings per class kept out, scored
  c.model = ml_collections.ConfigDict(dict(
      nm_channels=112, pln_channels=256, oml_channels=256, oml_hidden=1024,
      num_outputs=1000, conv_impl="auto", gate=True,
      image_size=28))             # square grey input images (the data's, checked)
  c.log_every = 20                # meta-steps per jitted chunk / log line
  c.ckpt_every = 1000
  c.keep_checkpoints = 3
  c.update(entry.config)
  if name == "smoke":
    c.steps = 6
    c.traj_len = 5
    c.remember_size = 8
    c.log_every = 2
    c.ckpt_every = 2
    c.pretrain_batch = 8
    c.ways, c.shots, c.queries = 4, 2, 1
    c.model.update(nm_channels=8, pln_channels=16, oml_channels=16, oml_hidden=32)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the bad field and the allowed range."""
  def need(ok, msg):
    if not ok:
      raise ValueError(f"bad config: {msg}")
  need(c.method in methods.REGISTRY,
       f"method={c.method!r} must be one of {sorted(methods.REGISTRY)}")
  entry = methods.get(c.method)
  need(c.zap in entry.zaps, entry.zap_refusal(c.zap))
  need(c.zap_scale in ("row", "block"), f"zap_scale={c.zap_scale!r} must be "
       "'row' (Kaiming per row) or 'block' (over the rows drawn together)")
  need(entry.estimator is not steps.asb or c.meta_batch == 1,
       f"meta_batch={c.meta_batch}: asb learns one trajectory per step; use 1")
  need(isinstance(c.validation_alphabets, tuple)
       and all(isinstance(a, str) for a in c.validation_alphabets),
       f"validation_alphabets={c.validation_alphabets!r} must be a tuple of alphabet names, "
       "e.g. configs.VALIDATION_ALPHABETS")
  for k in ("steps", "seeds", "traj_len", "meta_batch", "log_every", "ckpt_every",
            "keep_checkpoints", "num_train_classes", "pretrain_batch", "unroll"):
    need(int(c[k]) >= 1, f"{k}={c[k]} must be a positive integer")
  for k in ("ways", "shots", "queries"):
    need(int(c[k]) >= 1, f"{k}={c[k]} must be a positive integer")
  need(c.remember_size >= 0, f"remember_size={c.remember_size} must be >= 0")
  for k in ("meta_lr", "inner_lr"):
    need(c[k] > 0 and math.isfinite(c[k]), f"{k}={c[k]} must be a positive number")
  need(c.inner_optimizer in meta.INNER_OPTIMIZERS,
       f"inner_optimizer={c.inner_optimizer!r} must be one of "
       f"{sorted(meta.INNER_OPTIMIZERS)}")
  need(c.ways <= c.num_train_classes,
       f"ways={c.ways} exceeds num_train_classes={c.num_train_classes}")
  need(c.head in heads.HEADS, f"head={c.head!r} must be a closed-form head: "
       f"{', '.join(sorted(heads.HEADS))}")
  need(c.head_reg > 0 and math.isfinite(c.head_reg) and
       (c.head != "gaussian" or c.head_reg <= 1),
       f"head_reg={c.head_reg} must be a positive number (at most 1 for gaussian)")
  need(c.head_scale > 0 and math.isfinite(c.head_scale),
       f"head_scale={c.head_scale} must be a positive number")
  need(c.meta_batch <= c.num_train_classes,
       f"meta_batch={c.meta_batch} exceeds num_train_classes={c.num_train_classes}")
  need(1 <= c.rotations <= 4, f"rotations={c.rotations} must be 1, 2, 3 or 4 "
       "(turns of 90 degrees)")
  need(0 <= c.shift < c.model.image_size // 2, f"shift={c.shift} must be a whole "
       f"number of pixels from 0 to {c.model.image_size // 2 - 1}")
  need(c.shift == 0 or entry.sampler is steps.iid_batches,
       f"shift={c.shift}: method {c.method!r} does not learn from i.i.d. batches; "
       "shift applies to pretrain only, drop it")
  need(c.num_train_classes * c.rotations <= c.model.num_outputs,
       f"num_train_classes={c.num_train_classes} x rotations={c.rotations} exceeds "
       f"the head's num_outputs={c.model.num_outputs}: raise model.num_outputs")
  need(c.ckpt_every % c.log_every == 0,
       f"ckpt_every={c.ckpt_every} must be a multiple of log_every={c.log_every}")
  need(len(c.inner_params) >= 1, "inner_params must name at least one prefix")
  need(c.shard in ("auto", "on", "off"), f"shard={c.shard!r} must be auto, on or off")
  need(0 <= c.holdout_drawings, f"holdout_drawings={c.holdout_drawings} must be >= 0")
  need(c.holdout_drawings == 0 or methods.get(c.method).make_validation is not None,
       f"holdout_drawings={c.holdout_drawings}: method {c.method!r} has no held-out "
       "score; leave it 0")


def fits_drawings(c: ml_collections.ConfigDict, drawings: int) -> None:
  """Raises ValueError unless what one step samples of a class fits in the
  dataset's ``drawings`` per class (read from the images, in
  ``training.train`` before anything is written)."""
  def need(ok, msg):
    if not ok:
      raise ValueError(f"bad config: {msg}; the data's classes have {drawings} "
                       "drawings each: lower it")
  need(c.traj_len <= drawings, f"traj_len={c.traj_len}")
  need(c.shots + c.queries <= drawings, f"shots={c.shots} + queries={c.queries}")
  need(c.holdout_drawings < drawings,
       f"holdout_drawings={c.holdout_drawings} leaves no drawing to train on")


def upgrade(saved: dict) -> dict:
  """A saved config dict in this version's keys: dropped keys removed, added
  keys given the value that reproduces the run, renamed keys translated
  (``reset_head_rows`` -> ``zap``)."""
  saved = {**_ADDED_KEYS, **{k: v for k, v in saved.items() if k not in _DROPPED_KEYS}}
  entry = methods.get(saved["method"])
  for old, new in _RENAMED_KEYS.items():
    if old in saved:
      saved.update(new(saved.pop(old), entry))
  return saved


def from_dict(saved: dict) -> ml_collections.ConfigDict:
  """The config a run saved (its config.json), typed as :func:`get_config`'s:
  tuples stay tuples, keys added since the run was made take their defaults
  (which reproduce the earlier behaviour) or, where the default would not,
  the value in ``_ADDED_KEYS``; unknown keys are an error."""
  saved = upgrade(saved)
  c = get_config(saved.get("name", "default"), saved["method"])
  _fill(c, saved, "")
  return c


def _fill(target: ml_collections.ConfigDict, values: dict, where: str) -> None:
  """Sets ``target``'s fields from a saved dict, typed as ``target``'s (lists
  back to tuples); a key ``target`` lacks is an error."""
  for k, v in values.items():
    if k not in target:
      raise ValueError(f"saved config has an unknown key '{where}{k}'; it was "
                       "written by another version of anml-jax")
    if isinstance(target[k], ml_collections.ConfigDict):
      _fill(target[k], v, f"{where}{k}.")
    else:
      target[k] = tuple(v) if isinstance(target[k], tuple) else v


# Meta-test learning rates of the original evaluate_classification.py (Adam).
PAPER_LRS = (0.001, 0.0006, 0.0004, 0.00035, 0.0003, 0.00025, 0.0002, 0.00015,
             0.0001, 0.00009, 0.00008, 0.00006, 0.00003, 0.00001)


def get_eval_config(name: str = "default") -> ml_collections.ConfigDict:
  """Meta-test protocol settings (sources in docs/fidelity.md)."""
  if name not in EVAL_NAMES:
    raise ValueError(f"unknown eval config {name!r}; choose one of {EVAL_NAMES}")
  c = ml_collections.ConfigDict()
  c.name = name
  c.finetune = ()              # parameter prefixes re-learnt; () = the method's
  c.oracle = False             # learn each stream i.i.d. (the upper bound)
  # The learner, a name in anml_jax/learners.py: 'adam' (the paper's: Adam, one
  # image per step, on the parameters ``finetune`` names, lr searched over ``lrs``) or a closed-form
  # head of anml_jax/heads.py (on the fixed ``features``, its regulariser
  # searched over ``regs``, () = the head's own grid).
  c.learner = "adam"
  c.features = "head_input"    # closed-form heads: 'head_input' or 'context'
  c.regs = ()
  # Closed-form heads: each image as 1, 5 or 9 views, its one-pixel translations
  # (data.VIEW_SHIFTS): a learnt image adds every view to the head's
  # statistics in its one step; an image is scored by its views' mean feature.
  c.views = 1
  c.schedule = (10, 50, 75, 100, 200, 300, 400, 500, 600)
  c.runs = 10                  # ANML README: --runs 10
  c.search_runs = 10           # range(10) lr-search repetitions per N
  c.lrs = PAPER_LRS
  c.class_pool = 650           # keep = choice(range(650), N)
  c.search_pool = 963          # lr search on meta-training-side classes
  c.train_per_class = 15       # first 15 drawings train, last 5 test
  # Which drawings are first (data.order_drawings): 'drawer' (1-15 learnt,
  # 16-20 held out) or 'random' (a seeded permutation per class).
  c.split = "drawer"
  c.split_seed = 0
  # Which classes the final runs learn: 'evaluation' (the meta-test: unseen
  # classes) or 'validation' (the background alphabets the checkpoint's run
  # held out, its config's validation_alphabets; the search then runs on the
  # other background classes). Every design choice is made on 'validation'.
  c.stream_classes = "evaluation"
  c.seed = 222                 # evaluate_classification.py --seed default
  # Images predicted at once per device, summed over the streams run in
  # parallel (runs x lrs): bounds the meta-test memory (HISTORY.md, "Benchmarks measured").
  c.eval_images = 2048
  if name == "cpu":               # reduced protocol for a 2-core CPU
    c.schedule = (10, 50, 100)
    c.runs = 2
    c.search_runs = 1
    c.lrs = (0.001, 0.0003, 0.0001)
    c.eval_images = 768
  if name == "quick":             # README's Quickstart: a closed-form head, minutes on 2 cores
    c.learner = "gaussian"
    c.schedule = (10, 50, 100, 200, 400, 600)
    c.runs = 3
    c.search_runs = 3
  if name == "validation":        # the meta-test's protocol on the held-out alphabets
    c.stream_classes = "validation"
    c.schedule = (10, 50, 100, 200)
  if name == "smoke":
    c.schedule = (3, 5)
    c.runs = 2
    c.search_runs = 2
    c.lrs = (0.001, 0.0001)
  return c


def eval_from_dict(saved: dict) -> ml_collections.ConfigDict:
  """The meta-test protocol a results record saved (its ``protocol``), typed
  as :func:`get_eval_config`'s."""
  c = get_eval_config(saved.get("name", "default"))
  _fill(c, saved, "")
  return c


def validate_eval(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the bad meta-test protocol field."""
  def need(ok, msg):
    if not ok:
      raise ValueError(f"bad eval config: {msg}")
  need(len(c.schedule) >= 1 and all(int(n) >= 1 for n in c.schedule),
       f"schedule={c.schedule} must list positive class counts")
  for k in ("runs", "search_runs", "eval_images", "class_pool", "search_pool"):
    need(int(c[k]) >= 1, f"{k}={c[k]} must be a positive integer")
  need(len(c.lrs) >= 1 and all(lr > 0 and math.isfinite(lr) for lr in c.lrs),
       f"lrs={c.lrs} must list positive numbers")
  need(c.train_per_class >= 1, f"train_per_class={c.train_per_class} must be a "
       "positive integer")
  need(c.split in data.SPLITS, f"split={c.split!r} must be one of {', '.join(data.SPLITS)}")
  need(c.stream_classes in ("evaluation", "validation"), f"stream_classes="
       f"{c.stream_classes!r} must be 'evaluation' (the meta-test) or 'validation'")
  learners.get(c.learner).validate(c)
  need(max(c.schedule) <= min(c.class_pool, c.search_pool),
       f"schedule up to {max(c.schedule)} classes but only {c.class_pool} "
       f"evaluation / {c.search_pool} search classes are in the pools")
