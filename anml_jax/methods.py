"""The methods, by name: one registry entry each.

An entry says everything that differs between methods: its network, its
config values that differ from the shared defaults (``configs.get_config``),
the parts its training step is composed of (:mod:`anml_jax.steps`), and what
it re-learns at meta-test. Adding a method is one :func:`register` call, here
or from outside the package, with keyword arguments; ``train.py``,
``evaluate.py`` and the library look it up.
"""
from typing import Callable, NamedTuple

from anml_jax import meta, models, steps
from anml_jax.models import Network


class Method(NamedTuple):
  """A registry entry: a method declared by its parts.

  Attributes:
    name: the config's ``method`` value.
    arch: the network, a key of :data:`ARCHITECTURES`.
    finetune: parameter prefixes re-learnt at meta-test (the rest is frozen).
    sampler, estimator: the step's parts (:mod:`anml_jax.steps`), factories
      over ``(cfg, net)``; estimator None for a method that is not trained
      (scratch).
    zaps: the resets (config ``zap``, :data:`steps.ZAPS`) the method can use.
    optimizer: ``cfg -> optax.GradientTransformation``, the outer optimiser.
    batch_key: the config key of the batch split over devices; None: the
      step runs on one device.
    make_validation: ``(cfg, net) -> score(params, images) -> ()``, logged at
      every checkpoint when ``cfg.holdout_drawings`` > 0; None if the method
      has no held-out score.
    config: config values that differ from the shared defaults.
    description: one line, shown in errors and the docs.
  """
  name: str
  arch: str
  finetune: tuple
  sampler: Callable | None = None
  estimator: Callable | None = None
  zaps: tuple = ("none",)
  optimizer: Callable = meta.make_optimizer
  batch_key: str | None = None
  make_validation: Callable | None = None
  config: dict = {}
  description: str = ""

  @property
  def trained(self) -> bool:
    return self.estimator is not None

  def zap_refusal(self, zap: str) -> str:
    """Why this method refuses the reset ``zap`` (one not in ``zaps``)."""
    return (f"zap={zap!r}: method {self.name!r} can use {', '.join(self.zaps)} "
            "(anml_jax/steps.py ZAPS); choose one of those")

  def make_step(self, cfg, net: Network, mesh=None) -> Callable:
    """``step(state, images) -> (state, metrics)`` (:func:`steps.make_step`)."""
    if not self.trained:
      raise ValueError(f"method {self.name!r} is not trained ({self.description})")
    if cfg.zap not in self.zaps:
      raise ValueError(self.zap_refusal(cfg.zap))
    return steps.make_step(cfg, net, mesh, sampler=self.sampler, estimator=self.estimator,
                           batch_key=self.batch_key, optimizer=self.optimizer)


def _anml(m) -> Network:
  return models.make_anml(nm_channels=m.nm_channels, pln_channels=m.pln_channels,
                          num_outputs=m.num_outputs, conv_impl=m.conv_impl, gated=m.gate,
                          image_size=m.image_size)


def _oml(m) -> Network:
  return models.make_oml(channels=m.oml_channels, hidden=m.oml_hidden,
                         num_outputs=m.num_outputs, conv_impl=m.conv_impl,
                         image_size=m.image_size)


# Network factories over a config's ``model`` block.
ARCHITECTURES: dict[str, Callable] = {"anml": _anml, "oml": _oml}

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds ``method`` to the registry (replacing an entry of the same name)."""
  if method.arch not in ARCHITECTURES:
    raise ValueError(f"method {method.name!r}: unknown arch {method.arch!r}; "
                     f"known: {sorted(ARCHITECTURES)}")
  REGISTRY[method.name] = method
  return method


def get(name: str) -> Method:
  if name not in REGISTRY:
    raise ValueError(f"unknown method {name!r}; choose one of {sorted(REGISTRY)}")
  return REGISTRY[name]


def network(cfg) -> Network:
  """The :class:`models.Network` a config describes."""
  return ARCHITECTURES[get(cfg.method).arch](cfg.model)


# Where each re-learns at meta-test (docs/fidelity.md): ANML and pretrain only
# the classifier on top of their frozen features, as the authors' later
# evaluation of ANML and of their pretrained baseline (the original README's
# first command, ``--rln 13``, freezes the same tensors); OML its PLN (RLN
# frozen), as Javed & White; scratch everything, having no features worth
# keeping. ASB as ANML (Frati et al. evaluate both ways; ``--eval_config.
# finetune=nm,pln`` re-learns the whole network).
register(Method(
    name="anml", arch="anml", finetune=("pln/head",),
    sampler=steps.trajectories, estimator=steps.unrolled, batch_key="meta_batch",
    zaps=("none", "trajectory"), config={"zap": "trajectory"},
    description="ANML: a neuromodulatory gate on the PLN, meta-learned through the "
    "inner loop"))
register(Method(
    name="oml", arch="oml", finetune=("pln",),
    sampler=steps.trajectories, estimator=steps.unrolled, batch_key="meta_batch",
    zaps=("none", "trajectory"),
    # OML README (Javed & White 2019): --meta_lr 1e-4 --update_lr 0.03
    config={"zap": "trajectory", "meta_lr": 1e-4, "inner_lr": 0.03},
    description="OML: a meta-learned representation (RLN) under a fast PLN"))
register(Method(
    name="asb", arch="anml", finetune=("pln/head",),
    sampler=steps.trajectories, estimator=steps.asb, batch_key=None,
    zaps=("none", "trajectory"),
    # Frati et al. 2023, configs/train-omni-seqep-sanml.yml: 9,000 steps, SGD
    # lr 0.1 on all weights, Adam 1e-3, 20 images + 64 remember, zapping on
    # (their default), their network without neuromodulation.
    config={"zap": "trajectory", "steps": 9000, "inner_params": ("nm", "pln"),
            "model": {"gate": False}},
    description="ASB: alternating sequential (SGD on one class) and batch (Adam) "
    "learning, no meta-gradient (Frati et al. 2023)"))
register(Method(
    name="pretrain", arch="anml", finetune=("pln/head",),
    sampler=steps.iid_batches, estimator=steps.direct, batch_key="pretrain_batch",
    zaps=("none", "epoch"), make_validation=meta.make_holdout_accuracy,
    description="pretrain-and-transfer: ANML's network trained i.i.d. on the "
    "meta-train classes"))
register(Method(
    name="streamhead", arch="anml", finetune=("pln/head",),
    sampler=steps.episodes, estimator=steps.through_head,
    description="streamhead: ANML's network meta-trained through a one-pass "
    "closed-form head"))
register(Method(
    name="scratch", arch="anml", finetune=("nm", "pln"),
    description="scratch: ANML's network at its random initialisation, not trained"))
