"""Closed-form streaming heads: one-pass classifiers over fixed features.

Each head sees a stream of (feature, label) pairs once, one image at a time,
and keeps only additive statistics of it (:class:`Stats`: per-class counts and
sums, and for some heads the d x d second moment). Because the statistics are
sums, the result does not depend on the order of the stream: learning classes
one after another gives what learning them i.i.d. gives, up to float rounding.
A readout turns the statistics and a regulariser into a linear classifier
``logits = x @ W + b``:

* ``prototype``: nearest class mean, Euclidean (``-|x - mu_c|^2``; no
  regulariser);
* ``prototype_cosine``: nearest class mean of L2-normalised features, by
  cosine similarity (no regulariser);
* ``ridge``: least squares onto one-hot targets with an unregularised bias,
  ``lambda = reg * tr(G) / d`` (``G`` the features' second moment, so ``reg``
  is free of the features' scale); one pass gives the batch ridge fit, which
  recursive least squares reaches after the same pass by rank-one inverse
  updates (here it is solved once, from the sums, at readout);
* ``gaussian``: one Gaussian per class with a shared covariance, the pooled
  within-class covariance ``S`` shrunk towards ``s I`` (``s = tr(S) / d``,
  Ledoit-Wolf's target): ``(1 - reg) S + reg s I``; the readout is the
  linear discriminant (equal priors).

Shapes: features ``x`` (d,) or (B, d), labels in ``[0, n)``, ``n`` classes.
The statistics are updated one image at a time (:func:`update`);
:func:`accumulate` folds ``block`` consecutive updates into one matrix
product, which for sums is the same arithmetic in another order (tested).
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from anml_jax.continual import StreamResult, per_class_accuracy, split_drawings


class Stats(NamedTuple):
  """Additive statistics of a labelled stream.

  count: (n,) images seen per class. sums: (n, d) feature sums per class.
  gram: (d, d) sum of x x^T over all images, or None (heads that need no
  second moment).
  """
  count: jax.Array
  sums: jax.Array
  gram: jax.Array | None


class Head(NamedTuple):
  """A closed-form head.

  Attributes:
    name: its eval-config name.
    normalize: L2-normalise every feature before it enters the statistics
      (and before prediction).
    gram: whether the readout needs :attr:`Stats.gram`.
    regs: the default regulariser grid searched at meta-test, or None for a
      head without a regulariser.
    readout: ``(stats, reg) -> (W (d, n), b (n,))``.
  """
  name: str
  normalize: bool
  gram: bool
  regs: tuple | None
  readout: Callable


def init_stats(n: int, d: int, gram: bool, dtype=jnp.float32) -> Stats:
  """Statistics of an empty stream over ``n`` classes of ``d`` features."""
  return Stats(jnp.zeros((n,), dtype), jnp.zeros((n, d), dtype),
               jnp.zeros((d, d), dtype) if gram else None)


def update(stats: Stats, x: jax.Array, y: jax.Array) -> Stats:
  """The statistics after one more image: x (d,), y () in [0, n); a
  negative y (padding) changes nothing."""
  onehot = jax.nn.one_hot(y, stats.count.shape[0], dtype=stats.sums.dtype)
  keep = (y >= 0).astype(x.dtype)
  gram = None if stats.gram is None else stats.gram + keep * jnp.outer(x, x)
  return Stats(stats.count + onehot, stats.sums + onehot[:, None] * x[None], gram)


def update_block(stats: Stats, x: jax.Array, y: jax.Array) -> Stats:
  """``B`` updates at once: x (B, d), y (B,); equal to B calls of
  :func:`update` up to float summation order."""
  onehot = jax.nn.one_hot(y, stats.count.shape[0], dtype=stats.sums.dtype)
  xk = x * (y >= 0).astype(x.dtype)[:, None]
  gram = None if stats.gram is None else stats.gram + xk.T @ xk
  return Stats(stats.count + onehot.sum(0), stats.sums + onehot.T @ x, gram)


def accumulate(stats: Stats, x: jax.Array, y: jax.Array, block: int = 1) -> Stats:
  """One pass over a stream, in order, as a ``lax.scan``: x (S, d), y (S,).

  ``block`` images per scan step (the stream padded with ignored images to a
  multiple of it): 1 is the literal one-image-at-a-time learner; larger
  blocks turn the d x d rank-one updates, which are bound by memory traffic,
  into matrix products (bench/heads.py measures both).
  """
  s = x.shape[0]
  pad = (-s) % block
  x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
  y = jnp.concatenate([y, -jnp.ones((pad,), y.dtype)])
  xb = x.reshape((-1, block) + x.shape[1:])
  yb = y.reshape(-1, block)
  step = (lambda st, a: (update(st, a[0][0], a[1][0]), None)) if block == 1 else (
      lambda st, a: (update_block(st, *a), None))
  return jax.lax.scan(step, stats, (xb, yb))[0]


def _unseen_masked(b: jax.Array, count: jax.Array) -> jax.Array:
  return jnp.where(count > 0, b, -jnp.inf)


def _means(stats: Stats) -> jax.Array:
  return stats.sums / jnp.maximum(stats.count, 1)[:, None]


def _prototype_readout(stats: Stats, reg=None):
  del reg
  mu = _means(stats)
  return 2.0 * mu.T, _unseen_masked(-jnp.sum(mu * mu, -1), stats.count)


def _cosine_readout(stats: Stats, reg=None):
  del reg
  norm = jnp.linalg.norm(stats.sums, axis=-1, keepdims=True)
  w = stats.sums / jnp.where(norm > 0, norm, 1.0)
  return w.T, _unseen_masked(jnp.zeros_like(stats.count), stats.count)


def _ridge_readout(stats: Stats, reg):
  d = stats.sums.shape[1]
  total = stats.sums.sum(0)
  a = jnp.block([[stats.gram, total[:, None]],
                 [total[None, :], stats.count.sum()[None, None]]])
  lam = reg * jnp.trace(stats.gram) / d
  a = a + jnp.diag(jnp.concatenate([jnp.full((d,), lam), jnp.zeros((1,))]))
  rhs = jnp.concatenate([stats.sums.T, stats.count[None, :]])       # (d + 1, n)
  w = jax.scipy.linalg.solve(a, rhs, assume_a="pos")
  return w[:d], _unseen_masked(w[d], stats.count)


def _gaussian_readout(stats: Stats, reg):
  d = stats.sums.shape[1]
  mu = _means(stats)
  within = stats.gram - (stats.sums.T * (1.0 / jnp.maximum(stats.count, 1))) @ stats.sums
  dof = stats.count.sum() - jnp.sum(stats.count > 0)
  cov = within / jnp.maximum(dof, 1)
  scale = jnp.trace(cov) / d
  scale = jnp.where(scale > 0, scale, 1.0)    # one image per class: no spread seen
  cov = (1.0 - reg) * cov + reg * scale * jnp.eye(d, dtype=cov.dtype)
  z = jax.scipy.linalg.solve(cov, mu.T, assume_a="pos")              # (d, n)
  return z, _unseen_masked(-0.5 * jnp.sum(mu.T * z, 0), stats.count)


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("prototype", False, False, None, _prototype_readout),
    Head("prototype_cosine", True, False, None, _cosine_readout),
    Head("ridge", False, True, (1e-4, 1e-3, 1e-2, 1e-1, 1.0), _ridge_readout),
    Head("gaussian", False, True, (0.01, 0.03, 0.1, 0.3, 0.6, 0.9), _gaussian_readout),
)}


def get(name: str) -> Head:
  if name not in HEADS:
    raise ValueError(f"unknown closed-form head {name!r}; choose one of {sorted(HEADS)}")
  return HEADS[name]


def prepare(head: Head, x: jax.Array) -> jax.Array:
  """The features as ``head`` uses them: (..., d), L2-normalised if
  :attr:`Head.normalize`."""
  if not head.normalize:
    return x
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.where(norm > 0, norm, 1.0)


def learn(head: Head, x: jax.Array, y: jax.Array, n: int, block: int = 1) -> Stats:
  """One pass of ``head`` over a stream of S images with labels y (S,) in
  [0, n): x (S, d), or (S, V, d) for V views of each image, all of an
  image's views learnt in its one step (``block`` images per scan step)."""
  if x.ndim == 2:
    x = x[:, None]
  views, d = x.shape[1], x.shape[2]
  x = prepare(head, x).reshape(-1, d)
  return accumulate(init_stats(n, d, head.gram, x.dtype), x, jnp.repeat(y, views),
                    block * views)


def fit(head: Head, x: jax.Array, y: jax.Array, n: int, reg=None, block: int = 1):
  """:func:`learn`, then the readout: returns ``(W (d, n), b (n,))``, logits
  ``prepare(x) @ W + b`` for x (B, d)."""
  return head.readout(learn(head, x, y, n, block), reg)


def make_head_evaluator(head: Head, *, train_per_class: int, block: int = 64,
                        train_scores: bool = True) -> Callable:
  """Returns ``evaluate(regs, classes, features) -> continual.StreamResult``:
  the meta-test of :mod:`continual` with ``head`` as the learner.

  Each run learns its N classes one after another, ``train_per_class``
  drawings each, one pass (:func:`accumulate`, ``block`` images per scan
  step), then reads the statistics out once per regulariser and scores the
  drawings trained on (train) and the held-out ones (test).

  An image may come as V views (features (C, D, V, d), e.g. its translated
  copies, :data:`anml_jax.data.VIEW_SHIFTS`): learning an image adds all its
  views to the statistics, in its one step of the stream, and an image is
  scored by the mean of its views' features. One view is the plain learner.

  Args (of the returned function):
    regs: (L,) regularisers, each read out of the same statistics (ignored by
      a head without one; pass one value).
    classes: (R, N) class indices of each run, in learning order.
    features: (C, D, d) every image's features, or (C, D, V, d) its views'.
  With ``train_scores`` False the train accuracies are NaN (the lr search
  needs only the test scores, and scoring the N classes' training drawings costs most).
  The runs go one after another when there are several views (a run's
  stream holds N * train_per_class * V features), all at once otherwise.
  """
  def one_run(regs, cls, feats):
    n = cls.shape[0]
    x_tr, _, x_te, _ = split_drawings(feats, cls, train_per_class)   # (S, V, d)
    y_tr = jnp.repeat(jnp.arange(n), train_per_class)
    y_te = jnp.repeat(jnp.arange(n), x_te.shape[0] // n)
    stats = learn(head, x_tr, y_tr, n, block)
    x_tr, x_te = prepare(head, x_tr.mean(1)), prepare(head, x_te.mean(1))

    def score(reg):
      w, b = head.readout(stats, reg)
      p_te = jnp.argmax(x_te @ w + b, -1)
      if train_scores:
        p_tr = jnp.argmax(x_tr @ w + b, -1)
        tr, tr_cls = jnp.mean(p_tr == y_tr), per_class_accuracy(p_tr, y_tr, n)
      else:
        tr, tr_cls = jnp.nan, jnp.full((n,), jnp.nan)
      return tr, jnp.mean(p_te == y_te), tr_cls, per_class_accuracy(p_te, y_te, n)

    return jax.lax.map(score, regs)

  def evaluate(regs, classes, features):
    if features.ndim == 3:
      features = features[:, :, None]
    run = lambda cls: one_run(regs, cls, features)
    out = jax.vmap(run)(classes) if features.shape[2] == 1 else jax.lax.map(run, classes)
    return StreamResult(*out)

  return evaluate
