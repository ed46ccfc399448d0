"""Configurations: ``get_config(name, method)``.

``default`` holds the paper's settings (sources in docs/fidelity.md); ``smoke``
is a tiny variant that runs in seconds on a CPU. ``method`` picks ANML, OML or
pretraining (the pretrain-and-transfer baseline).
"""
import ml_collections

METHODS = ("anml", "oml", "pretrain")
NAMES = ("default", "smoke")


def get_config(name: str = "default", method: str = "anml") -> ml_collections.ConfigDict:
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; choose one of {NAMES}")
  c = ml_collections.ConfigDict()
  c.name = name
  c.method = method
  c.arch = "oml" if method == "oml" else "anml"
  c.seed = 9                      # ANML README command: --seed 9
  c.steps = 20000                 # --steps 20000
  c.meta_lr = 1e-3                # --meta_lr 0.001 (Adam)
  c.inner_lr = 0.1                # --update_lr 0.1 (plain SGD)
  c.inner_optimizer = "sgd"       # sgd | adam (meta.INNER_OPTIMIZERS)
  c.traj_len = 20                 # update_step 20: one image per SGD step
  c.remember_size = 64            # random batch of 64 (+ the 20 trajectory images)
  c.meta_batch = 1                # --tasks 1
  c.num_train_classes = 963       # args.classes = range(963)
  c.inner_params = ("pln",)       # --rln 7: NM frozen, whole PLN adapted
  c.first_order = False
  c.remat = False
  c.unroll = 1                    # lax.scan unroll of the inner loop
  c.shard = "auto"                # meta-batch over devices: auto | on | off
  c.reset_head_rows = True        # reset_classifer(class) before each step
  c.pretrain_batch = 64
  c.model = ml_collections.ConfigDict(dict(
      nm_channels=112, pln_channels=256, oml_channels=256, oml_hidden=1024,
      num_outputs=1000, conv_impl="auto"))
  c.log_every = 20                # meta-steps per jitted chunk / log line
  c.ckpt_every = 1000
  c.keep_checkpoints = 3
  if method == "oml":
    c.meta_lr = 1e-4              # OML README: --meta_lr 1e-4
    c.inner_lr = 0.03             # OML README: --update_lr 0.03
  if method == "pretrain":
    c.steps = 20000
    c.reset_head_rows = False
  if name == "smoke":
    c.steps = 6
    c.traj_len = 5
    c.remember_size = 8
    c.log_every = 2
    c.ckpt_every = 2
    c.pretrain_batch = 8
    c.model.update(nm_channels=8, pln_channels=16, oml_channels=16, oml_hidden=32)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the bad field and the allowed range."""
  def need(ok, msg):
    if not ok:
      raise ValueError(f"bad config: {msg}")
  need(c.method in METHODS, f"method={c.method!r} must be one of {METHODS}")
  need(c.arch in ("anml", "oml"), f"arch={c.arch!r} must be 'anml' or 'oml'")
  for k in ("steps", "traj_len", "meta_batch", "log_every", "ckpt_every",
            "keep_checkpoints", "num_train_classes", "pretrain_batch", "unroll"):
    need(int(c[k]) >= 1, f"{k}={c[k]} must be a positive integer")
  need(c.remember_size >= 0, f"remember_size={c.remember_size} must be >= 0")
  for k in ("meta_lr", "inner_lr"):
    need(c[k] > 0 and c[k] == c[k], f"{k}={c[k]} must be a positive number")
  need(c.traj_len <= 20, f"traj_len={c.traj_len}: a class has only 20 drawings")
  need(c.meta_batch <= c.num_train_classes,
       f"meta_batch={c.meta_batch} exceeds num_train_classes={c.num_train_classes}")
  need(c.num_train_classes <= c.model.num_outputs,
       f"num_train_classes={c.num_train_classes} exceeds the head's "
       f"num_outputs={c.model.num_outputs}")
  need(c.ckpt_every % c.log_every == 0,
       f"ckpt_every={c.ckpt_every} must be a multiple of log_every={c.log_every}")
  need(len(c.inner_params) >= 1, "inner_params must name at least one prefix")
  need(c.shard in ("auto", "on", "off"), f"shard={c.shard!r} must be auto, on or off")


def make_network_from_config(c):
  """The :class:`models.Network` a config describes."""
  from anml_jax import models
  m = c.model
  if c.arch == "anml":
    return models.make_anml(nm_channels=m.nm_channels, pln_channels=m.pln_channels,
                            num_outputs=m.num_outputs, conv_impl=m.conv_impl)
  return models.make_oml(channels=m.oml_channels, hidden=m.oml_hidden,
                         num_outputs=m.num_outputs, conv_impl=m.conv_impl)


# Meta-test learning rates of the original evaluate_classification.py (Adam).
PAPER_LRS = (0.001, 0.0006, 0.0004, 0.00035, 0.0003, 0.00025, 0.0002, 0.00015,
             0.0001, 0.00009, 0.00008, 0.00006, 0.00003, 0.00001)


def get_eval_config(name: str = "default") -> ml_collections.ConfigDict:
  """Meta-test protocol settings (sources in docs/fidelity.md)."""
  if name not in NAMES + ("cpu",):
    raise ValueError(f"unknown eval config {name!r}; choose default, cpu or smoke")
  c = ml_collections.ConfigDict()
  c.name = name
  c.schedule = (10, 50, 75, 100, 200, 300, 400, 500, 600)
  c.runs = 10                  # ANML README: --runs 10
  c.search_runs = 10           # range(10) lr-search repetitions per N
  c.lrs = PAPER_LRS
  c.class_pool = 650           # keep = choice(range(650), N)
  c.search_pool = 963          # lr search on meta-training-side classes
  c.train_per_class = 15       # first 15 drawings train, last 5 test
  c.seed = 222                 # evaluate_classification.py --seed default
  # Images predicted at once per device, summed over the streams run in
  # parallel (runs x lrs): bounds the meta-test memory (bench/README.md).
  c.eval_images = 2048
  if name == "cpu":               # reduced protocol for a 2-core CPU
    c.schedule = (10, 50, 100)
    c.runs = 2
    c.search_runs = 1
    c.lrs = (0.001, 0.0003, 0.0001)
    c.eval_images = 768
  if name == "smoke":
    c.schedule = (3, 5)
    c.runs = 2
    c.search_runs = 2
    c.lrs = (0.001, 0.0001)
  return c
