"""The inner loop: sequential SGD on one trajectory, as one ``lax.scan``.

Parameters are split by path prefix (e.g. ``'pln'`` or ``'pln/head'``) into
*fast* ones, updated by the inner loop, and *slow* ones, held fixed there (but
still meta-learned: gradients reach them through the fast updates).
"""
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from anml_jax.models import Network

Params = Any


def partition(params: Params, prefixes: Sequence[str]) -> tuple[dict, dict]:
  """Splits ``params`` into (fast, slow) flat dicts keyed by 'a/b/c' paths.

  A leaf is fast iff its path equals or starts with one of ``prefixes``.
  """
  flat = traverse_util.flatten_dict(params, sep="/")
  prefixes = tuple(prefixes)
  for p in prefixes:
    if not any(k == p or k.startswith(p + "/") for k in flat):
      raise ValueError(f"inner_params prefix {p!r} matches no parameter; "
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


def make_inner_loop(net: Network, *, lr: float, inner_params: Sequence[str],
                    first_order: bool = False, remat: bool = False,
                    unroll: int = 1) -> Callable:
  """Returns ``inner(params, x, y, ctx) -> (adapted_params, losses)``.

  ``inner`` runs T SGD steps ``fast <- fast - lr * grad``, one image each:

  * x: (T, 28, 28, 1) trajectory images; y: (T,) labels;
  * ctx: (T, D) precomputed context, or None to compute it from the current
    parameters at every step (needed when the context's parameters are fast);
  * losses: (T,) the loss of each image before its update.

  With ``first_order`` the inner gradients are treated as constants in the
  meta-gradient (first-order MAML); ``remat`` recomputes each step's forward
  pass in the backward pass (``jax.checkpoint``) to save memory.
  """
  prefixes = tuple(inner_params)

  def loss_fn(fast, slow, x, y, ctx):
    params = merge(fast, slow)
    if ctx is None:
      ctx = net.context(params, x)
    return cross_entropy(net.predict(params, x, ctx), y)

  def step(fast, slow, x, y, ctx):
    loss, grads = jax.value_and_grad(loss_fn)(fast, slow, x, y, ctx)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    return jax.tree.map(lambda p, g: p - lr * g, fast, grads), loss

  if remat:
    step = jax.checkpoint(step)

  def inner(params, x, y, ctx=None):
    fast, slow = partition(params, prefixes)

    def body(fast, xs):
      xi, yi, ci = xs
      return step(fast, slow, xi[None], yi[None],
                  None if ci is None else ci[None])

    fast, losses = jax.lax.scan(body, fast, (x, y, ctx), unroll=unroll)
    return merge(fast, slow), losses

  return inner
