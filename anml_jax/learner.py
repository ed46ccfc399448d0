"""The sequential learner: one image per optimiser step, as one ``lax.scan``.

Both loops of the method are this learner. Meta-training's inner loop runs it
with ``optax.sgd(inner_lr)`` on the PLN and differentiates through it; the
meta-test runs it with ``optax.adam(lr)`` on what a method re-learns (the whole
network, the PLN, or the head alone on precomputed features).

Parameters are split by path prefix (e.g. ``'pln'`` or ``'pln/head'``) into
*fast* ones, updated by the learner, and *slow* ones, held fixed there (but
still meta-learned: gradients reach them through the fast updates).
"""
from typing import Callable, Sequence

import jax
import optax
from flax import traverse_util

from anml_jax.models import Network, Params


def partition(params: Params, prefixes: Sequence[str]) -> tuple[dict, dict]:
  """Splits ``params`` into (fast, slow) flat dicts keyed by 'a/b/c' paths.

  A leaf is fast iff its path equals or starts with one of ``prefixes``.
  """
  flat = traverse_util.flatten_dict(params, sep="/")
  prefixes = tuple(prefixes)
  for p in prefixes:
    if not any(k == p or k.startswith(p + "/") for k in flat):
      raise ValueError(f"parameter prefix {p!r} matches no parameter; "
                       f"known top-level keys: {sorted(params)}")

  def is_fast(k):
    return any(k == p or k.startswith(p + "/") for p in prefixes)

  fast = {k: v for k, v in flat.items() if is_fast(k)}
  slow = {k: v for k, v in flat.items() if not is_fast(k)}
  return fast, slow


def merge(fast: dict, slow: dict) -> Params:
  """Inverse of :func:`partition`."""
  return traverse_util.unflatten_dict({**slow, **fast}, sep="/")


def context_is_static(net: Network, prefixes: Sequence[str]) -> bool:
  """True iff no fast parameter feeds the context, so it can be precomputed."""
  return not any(p.split("/")[0] in net.context_keys for p in prefixes)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy. logits (B, K), labels (B,) int."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_sequential_learner(net: Network, tx: optax.GradientTransformation,
                            fast_params: Sequence[str], *,
                            first_order: bool = False, remat: bool = False,
                            unroll: int = 1) -> Callable:
  """Returns ``learn(params, x, y, ctx=None) -> (params, losses)``.

  ``learn`` runs one pass of ``tx`` over the T images in order, one image per
  step, on the parameters under ``fast_params`` (the optimiser state starts
  fresh from ``tx.init``):

  * x: (T, ...) images (or features, for :func:`models.head_only`); y: (T,)
    int labels;
  * ctx: (T, C) context precomputed for each image, or None to compute it at
    every step from the current parameters (needed when the context's
    parameters are fast);
  * losses: (T,) the loss of each image before its update.

  Differentiable end to end: the meta-gradient is taken through it. With
  ``first_order`` its gradients are constants in that meta-gradient
  (first-order MAML); ``remat`` recomputes each step's forward pass in the
  backward pass (``jax.checkpoint``) to save memory; ``unroll`` is
  ``lax.scan``'s.
  """
  prefixes = tuple(fast_params)

  def loss_fn(fast, slow, x, y, ctx):
    return cross_entropy(net.predict(merge(fast, slow), x, ctx), y)

  def step(fast, opt_state, slow, x, y, ctx):
    loss, grads = jax.value_and_grad(loss_fn)(fast, slow, x, y, ctx)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = tx.update(grads, opt_state, fast)
    return optax.apply_updates(fast, updates), opt_state, loss

  if remat:
    step = jax.checkpoint(step)

  def learn(params, x, y, ctx=None):
    fast, slow = partition(params, prefixes)

    def body(carry, xs):
      xi, yi, ci = jax.tree.map(lambda a: a[None], xs)
      fast, opt_state, loss = step(*carry, slow, xi, yi, ci)
      return (fast, opt_state), loss

    (fast, _), losses = jax.lax.scan(body, (fast, tx.init(fast)), (x, y, ctx),
                                     unroll=unroll)
    return merge(fast, slow), losses

  return learn
