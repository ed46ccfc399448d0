"""The meta-test's learners: how a stream of new classes is learnt, as a registry.

A :class:`Learner` is what ``--eval_config.learner`` names: the paper's learner
(``adam``: Adam on the network's own parameters, one image per step) or a
closed-form head of :mod:`heads` on fixed features (``prototype``,
``prototype_cosine``, ``ridge``, ``gaussian``). Each learner carries its grid
of one hyperparameter (searched on streams of meta-training classes, the
winner used on the unseen ones), the checks it puts on the protocol, what it
re-learns, and ``streams``: the function the protocol (:mod:`evaluation`)
runs. Code outside this module never branches on a learner's name; a new
learner is one :func:`register` call, from inside the package or outside it.

Shapes: images (C, D, H, W, 1), C classes of D drawings; a stream learns N of
them, ``train_per_class`` drawings each, and is scored on the rest.
"""
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import continual, data, heads, methods, sharding
from anml_jax.learner import context_is_static
from anml_jax.models import Network, head_only, head_params

# ``streams(keys (R,), grid (L,), classes (R, N), side) -> continual.StreamResult``
# for side 'search' (the meta-training classes) or 'final' (the unseen ones).
Streams = Callable


class Learner(NamedTuple):
  """A meta-test learner.

  Attributes:
    name: its ``--eval_config.learner`` name.
    hyper: what its grid holds (the record's ``hyper_name``): 'lr', or a head's
      regulariser ('shrinkage', 'ridge'), or 'none'.
    grid: ``ecfg -> tuple`` of the values searched (``ecfg.lrs`` or
      ``ecfg.regs``, else its own default).
    validate: ``ecfg -> None``, raising ValueError naming a protocol field this
      learner cannot take and how to fix it.
    relearnt: ``(method, net, ecfg) -> tuple`` of the parameter prefixes it
      changes.
    streams: ``(net, params, finetune, background, evaluation, ecfg, mesh) ->
      Streams`` over both sides' images (C, D, H, W, 1).
    shards: whether ``streams`` splits its runs over ``mesh``'s devices.
  """
  name: str
  hyper: str
  grid: Callable
  validate: Callable
  relearnt: Callable
  streams: Callable
  shards: bool = False


LEARNERS: dict[str, Learner] = {}


def register(learner: Learner) -> Learner:
  """Adds ``learner`` to the registry (a name already taken is refused)."""
  if learner.name in LEARNERS:
    raise ValueError(f"a learner named {learner.name!r} is already registered")
  LEARNERS[learner.name] = learner
  return learner


def get(name: str) -> Learner:
  """The registered learner ``name``; ValueError naming the known ones."""
  if name not in LEARNERS:
    raise ValueError(f"bad eval config: learner={name!r} is not a registered learner; choose "
                     f"one of {', '.join(sorted(LEARNERS))}")
  return LEARNERS[name]


def _need(ok: bool, msg: str) -> None:
  if not ok:
    raise ValueError(f"bad eval config: {msg}")


# -- the streams both kinds of learner run ----------------------------------

def stream_eval_batch(eval_images: int, runs: int, lrs: int, devices: int = 1) -> int:
  """Per-stream prediction batch so that about ``eval_images`` images are in
  flight per device when ``runs`` x ``lrs`` streams run in parallel, the runs
  split over ``devices``. The memory of one meta-test call grows by about
  3.5 MB per image in flight at the paper's sizes, plus 0.06 to 0.1 GB per
  stream (HISTORY.md, "Benchmarks measured")."""
  return max(1, eval_images // (-(-runs // devices) * lrs))


def _sharded_runs(evaluate: Callable, mesh) -> Callable:
  """Wraps ``evaluate`` so that its runs axis is split over ``mesh``: the runs
  are padded (repeating runs) to a multiple of the device count, the padding's
  results dropped."""
  if mesh is None:
    return evaluate

  def run(params, keys, lrs, classes, images, ctx):
    r = keys.shape[0]
    idx = np.arange(r + (-r) % mesh.size) % r
    keys, classes = jax.device_put((keys[idx], classes[idx]),
                                   sharding.batch_sharded(mesh))
    res = evaluate(params, keys, lrs, classes, images, ctx)
    return jax.tree.map(lambda a: a[:r], res)

  return run


def only_the_head(net: Network, finetune: Sequence[str]) -> bool:
  """True iff ``finetune`` re-learns exactly ``net``'s output layer, so the
  features of every image are fixed during the meta-test."""
  return tuple(finetune) == ("/".join(net.head_path),)


def stream_inputs(net: Network, params, finetune: Sequence[str], images: jax.Array,
                  frozen_features: bool = True):
  """What a stream evaluator over ``images`` (C, D, H, W, 1) runs on:
  ``(net, params, images, ctx)`` for :func:`continual.make_stream_evaluator`.

  * only the head re-learnt (and ``frozen_features``): the head alone
    (:func:`models.head_only`) on every image's features (C, D, F), computed
    once, batched;
  * the context's parameters frozen: the network on the images, with the
    context (C, D, F) computed once;
  * otherwise the network on the images, everything recomputed per step.
  """
  if frozen_features and only_the_head(net, finetune):
    return (head_only(net), head_params(params, net.head_path),
            continual.compute_features(net, params, images), None)
  if context_is_static(net, finetune):
    return net, params, images, continual.compute_context(net, params, images)
  return net, params, images, None


def adam_streams(net: Network, params, finetune, bg, ev, ecfg, mesh) -> Streams:
  """Adam re-learning ``finetune``, one image per step (:mod:`continual`), on
  the background classes (side 'search') or the evaluation classes ('final');
  the grid holds learning rates."""
  if mesh is not None:
    params, bg, ev = sharding.replicate((params, bg, ev), mesh)
  _, _, bg, ctx_bg = stream_inputs(net, params, finetune, bg)
  net, params, ev, ctx_ev = stream_inputs(net, params, finetune, ev)
  inputs = {"search": (bg, ctx_bg), "final": (ev, ctx_ev)}
  devices = 1 if mesh is None else mesh.size
  evaluators = {}

  def streams(keys, lrs, classes, side):
    b = stream_eval_batch(ecfg.eval_images, keys.shape[0], lrs.shape[0], devices)
    if b not in evaluators:
      evaluators[b] = _sharded_runs(jax.jit(continual.make_stream_evaluator(
          net, finetune_params=finetune, train_per_class=ecfg.train_per_class,
          eval_batch=b, iid=bool(ecfg.oracle))), mesh)
    return evaluators[b](params, keys, lrs, classes, *inputs[side])

  return streams


def closed_form_features(net: Network, params, images: jax.Array, which: str,
                         views: int = 1, batch: int = 512) -> jax.Array:
  """(C, D, H, W, 1) -> (C, D, V, d): what a closed-form head learns from,
  for each of an image's ``views`` (its translated copies,
  :data:`data.VIEW_SHIFTS`; V = ``views``): ``'head_input'`` (the input of
  ``net``'s output layer; ANML: the gated PLN features) or ``'context'``
  (ANML: the NM's output; OML: the RLN's). ``batch`` forward passes at a
  time (``batch // V`` images, all their views), written straight into the
  one (C, D, V, d) array."""
  compute = net.context if which == "context" else net.head_input
  moves = data.VIEW_SHIFTS[views]
  return continual.map_images(
      lambda x: jnp.stack([compute(params, data.shifted(x, down, right))
                           for down, right in moves], 1), images, max(1, batch // views))


def head_streams(head: heads.Head, net: Network, params, bg, ev, ecfg) -> Streams:
  """A closed-form ``head`` over fixed features (the grid holds its
  regularisers; keys are unused: the head has no random initialisation). The
  search scores only the held-out drawings."""
  feats = {"search": closed_form_features(net, params, bg, ecfg.features, ecfg.views),
           "final": closed_form_features(net, params, ev, ecfg.features, ecfg.views)}
  evaluators = {side: jax.jit(heads.make_head_evaluator(
      head, train_per_class=ecfg.train_per_class, train_scores=side == "final"))
      for side in feats}

  def streams(keys, regs, classes, side):
    del keys
    return evaluators[side](regs, classes, feats[side])

  return streams


# -- the paper's learner -----------------------------------------------------

def _validate_adam(c) -> None:
  _need(not c.regs, f"regs={c.regs}: the adam learner searches lrs, not regs; "
        "drop --eval_config.regs or choose a closed-form learner")
  _need(c.features == "head_input", f"features={c.features!r}: the adam learner "
        "re-learns the network's own parameters; features applies to closed-form "
        "learners only")
  _need(c.views == 1, f"views={c.views}: the adam learner takes one image per "
        "step as it is; views applies to closed-form learners only")


ADAM = register(Learner(
    name="adam", hyper="lr", grid=lambda c: tuple(c.lrs), validate=_validate_adam,
    relearnt=lambda method, net, c: tuple(c.finetune) or methods.get(method).finetune,
    streams=adam_streams, shards=True))


# -- closed-form heads on fixed features --------------------------------------

def head_learner(head: heads.Head, hyper: str, max_reg: float = math.inf) -> Learner:
  """The learner of a closed-form ``head``: it re-learns only the output
  layer, on the features ``ecfg.features`` names, each image as
  ``ecfg.views`` views; ``hyper`` names its regulariser ('none' for a head
  without one), which may not exceed ``max_reg``."""
  def validate(c):
    _need(c.views in data.VIEW_SHIFTS, f"views={c.views} must be one of "
          f"{', '.join(map(str, data.VIEW_SHIFTS))} (the image and its one-pixel moves)")
    _need(c.features in ("head_input", "context"),
          f"features={c.features!r} must be 'head_input' or 'context'")
    _need(not c.finetune, f"finetune={c.finetune}: a closed-form head learns only the "
          "classifier, on fixed features; drop --eval_config.finetune, or use "
          "learner='adam' to re-learn more")
    _need(not c.oracle, f"learner={c.learner!r} does not depend on the order of the "
          "stream, so its oracle is itself; drop --eval_config.oracle")
    _need(head.regs is not None or not c.regs,
          f"regs={c.regs}: the {c.learner} head has no regulariser; drop "
          "--eval_config.regs")
    _need(all(r > 0 and math.isfinite(r) for r in c.regs),
          f"regs={c.regs} must list positive numbers")
    _need(all(r <= max_reg for r in c.regs),
          f"regs={c.regs}: the {c.learner} head's {hyper} must lie in (0, {max_reg:g}]")

  return Learner(
      name=head.name, hyper=hyper, grid=lambda c: tuple(c.regs) or head.regs or (0.0,),
      validate=validate, relearnt=lambda method, net, c: ("/".join(net.head_path),),
      streams=lambda net, params, finetune, bg, ev, c, mesh: head_streams(
          head, net, params, bg, ev, c))


PROTOTYPE = register(head_learner(heads.get("prototype"), "none"))
PROTOTYPE_COSINE = register(head_learner(heads.get("prototype_cosine"), "none"))
RIDGE = register(head_learner(heads.get("ridge"), "ridge"))
GAUSSIAN = register(head_learner(heads.get("gaussian"), "shrinkage", max_reg=1.0))
