"""The sequential learner: one image per optimiser step, as one ``lax.scan``.

Both loops of the method are this learner. Meta-training's inner loop runs it
with plain SGD on the PLN (:func:`make_sgd_learner`, which keeps the head's
updates as low-rank factors) and differentiates through it; the meta-test runs
it with ``optax.adam(lr)`` on what a method re-learns (the whole network, the
PLN, or the head alone on precomputed features).

Parameters are split by path prefix (e.g. ``'pln'`` or ``'pln/head'``) into
*fast* ones, updated by the learner, and *slow* ones, held fixed there (but
still meta-learned: gradients reach them through the fast updates).
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
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

  return _first_order(learn, prefixes) if first_order else learn


def _first_order(learn: Callable, prefixes: tuple) -> Callable:
  """First-order MAML: the trajectory runs on constants, and each fast
  parameter comes out as ``p + stop_gradient(p_T - p)``: the same values,
  with the derivative of p_T w.r.t. p taken as the identity. Equal to
  treating every inner gradient as a constant, without differentiating
  through the trajectory at all."""

  def wrapped(params, x, y, ctx=None):
    adapted, losses = learn(jax.lax.stop_gradient(params), x, y,
                            jax.lax.stop_gradient(ctx))
    fast, slow = partition(params, prefixes)
    moved, _ = partition(adapted, prefixes)
    fast = {k: p + jax.lax.stop_gradient(moved[k] - p) for k, p in fast.items()}
    return merge(fast, slow), losses

  return wrapped


def make_sgd_learner(net: Network, lr: float, fast_params: Sequence[str], *,
                     first_order: bool = False, remat: bool = False,
                     unroll: int = 1, low_rank_head: bool = True) -> Callable:
  """:func:`make_sequential_learner` with ``optax.sgd(lr)``, the same
  ``learn(params, x, y, ctx=None) -> (params, losses)``, faster when the
  head's kernel is fast.

  One image's gradient for the head's kernel (D, K) is the outer product of
  its features h (D,) and its logit gradient g (K,), so T SGD steps move the
  kernel by ``-lr * sum_t outer(h_t, g_t)``, a rank-T matrix. With
  ``low_rank_head`` the scan keeps the initial kernel W0 fixed and carries
  the factors ``U`` (T, D) = h_t and ``V`` (T, K) = -lr g_t; step t's logits
  are ``h @ W0 + (h @ U.T) @ V + b``, and the kernel ``W0 + U.T @ V`` is
  formed once, at the end. The same parameters as the dense path up to float
  rounding (tests/test_learner.py), without moving the (D, K) kernel through
  memory at every step and in its backward pass (HISTORY.md, "Benchmarks measured").
  """
  prefixes = tuple(fast_params)
  dense = make_sequential_learner(net, optax.sgd(lr), prefixes, remat=remat,
                                  unroll=unroll)
  head = "/".join(net.head_path)
  kernel_key, bias_key = head + "/kernel", head + "/bias"

  def learn(params, x, y, ctx=None):
    fast, slow = partition(params, prefixes)
    if not low_rank_head or kernel_key not in fast:
      return dense(params, x, y, ctx)
    w0 = fast.pop(kernel_key)
    bias_fast = bias_key in fast
    b = fast.pop(bias_key) if bias_fast else slow.pop(bias_key)

    def step(carry, x, y, ctx):
      fast, b, u, v, t = carry
      def features(f):
        return net.head_input(merge(f, slow), x, ctx)

      h, features_vjp = jax.vjp(features, fast)
      logits = h @ w0 + (h @ u.T) @ v + b
      loss, g = jax.value_and_grad(lambda z: cross_entropy(z, y))(logits)
      # g @ w0.T written so that no (K, D) copy of w0 is made: measured faster
      (grads,) = features_vjp(jnp.einsum("bk,dk->bd", g, w0) + (g @ v.T) @ u)
      g_b, row_h, row_g = g.sum(0), h[0], g[0]
      fast = jax.tree.map(lambda p, d: p - lr * d, fast, grads)
      if bias_fast:
        b = b - lr * g_b
      u = jax.lax.dynamic_update_index_in_dim(u, row_h, t, 0)
      v = jax.lax.dynamic_update_index_in_dim(v, -lr * row_g, t, 0)
      return (fast, b, u, v, t + 1), loss

    if remat:
      step = jax.checkpoint(step)

    def body(carry, xs):
      return step(carry, *jax.tree.map(lambda a: a[None], xs))

    t = x.shape[0]
    carry = (fast, b, jnp.zeros((t, w0.shape[0]), w0.dtype),
             jnp.zeros((t, w0.shape[1]), w0.dtype), jnp.zeros((), jnp.int32))
    (fast, b, u, v, _), losses = jax.lax.scan(body, carry, (x, y, ctx), unroll=unroll)
    return merge({**fast, kernel_key: w0 + u.T @ v, bias_key: b}, slow), losses

  return _first_order(learn, prefixes) if first_order else learn
