"""The methods, by name: one registry entry each.

An entry says everything that differs between methods: its network, its
config values that differ from the shared defaults (``configs.get_config``),
its training step, and what it re-learns at meta-test. Adding a method (a new
step factory, or a new way of freezing) is one :func:`register` call here
plus its tests; ``train.py``, ``evaluate.py`` and the library look it up.
"""
from typing import Callable, NamedTuple

from anml_jax import meta, models
from anml_jax.models import Network


class Method(NamedTuple):
  """A registry entry.

  Attributes:
    name: the config's ``method`` value.
    arch: the network, a key of :data:`ARCHITECTURES`.
    finetune: parameter prefixes re-learnt at meta-test (the rest is frozen).
    make_step: ``(cfg, net, mesh) -> step(state, images) -> (state,
      metrics)``, or None for a method that is not trained (scratch).
    batch_key: the config key of the batch split over devices.
    make_validation: ``(cfg, net) -> score(params, images) -> ()``, logged at
      every checkpoint when ``cfg.holdout_drawings`` > 0; None if the method
      has no held-out score.
    config: config values that differ from the shared defaults.
    description: one line, shown in errors and the docs.
  """
  name: str
  arch: str
  finetune: tuple
  make_step: Callable | None
  batch_key: str | None
  make_validation: Callable | None
  config: dict
  description: str


def _anml(m) -> Network:
  return models.make_anml(nm_channels=m.nm_channels, pln_channels=m.pln_channels,
                          num_outputs=m.num_outputs, conv_impl=m.conv_impl, gated=m.gate)


def _oml(m) -> Network:
  return models.make_oml(channels=m.oml_channels, hidden=m.oml_hidden,
                         num_outputs=m.num_outputs, conv_impl=m.conv_impl)


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
# keeping.
register(Method(
    "anml", "anml", ("pln/head",), meta.make_meta_train_step, "meta_batch", None, {},
    "ANML: a neuromodulatory gate on the PLN, meta-learned through the inner loop"))
register(Method(
    "oml", "oml", ("pln",), meta.make_meta_train_step, "meta_batch", None,
    # OML README (Javed & White 2019): --meta_lr 1e-4 --update_lr 0.03
    {"meta_lr": 1e-4, "inner_lr": 0.03},
    "OML: a meta-learned representation (RLN) under a fast PLN"))
register(Method(
    "pretrain", "anml", ("pln/head",), meta.make_pretrain_step, "pretrain_batch",
    meta.make_holdout_accuracy, {"reset_head_rows": False},
    "pretrain-and-transfer: ANML's network trained i.i.d. on the meta-train classes"))
register(Method(
    "streamhead", "anml", ("pln/head",), meta.make_head_train_step, "ways", None,
    {"reset_head_rows": False},
    "streamhead: ANML's network meta-trained through a one-pass closed-form head"))
register(Method(
    "scratch", "anml", ("nm", "pln"), None, None, None, {},
    "scratch: ANML's network at its random initialisation, not trained"))
