"""Meta-test: sequential (continual) learning of unseen classes, evaluated.

The protocol of the ANML paper and code: for a sample of N classes, reset the
output layer, then learn the classes one after another, ``train_per_class``
drawings each, one image per Adam step, a single pass; finally measure accuracy
on all the drawings trained on (meta-test *train*) and on the held-out
drawings of the same classes (meta-test *test*).

The whole stream is one ``lax.scan``; runs (class samples) and learning rates
are ``vmap``-ed; everything is jitted. With ``iid`` the same images are learned
in a random order instead (the original's ``--iid``: shuffled, batch 1, one
pass), the *oracle* upper bound of sequential learning.

What never changes during a stream is computed once, batched, outside the
scan (:func:`map_images`): the context when the context's parameters are
frozen, and all of the features when only the head is re-learnt (then the
stream learner runs on :func:`models.head_only`).
"""
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anml_jax.learner import make_sequential_learner
from anml_jax.models import Network, reinit_head
from anml_jax.types import Params


class StreamResult(NamedTuple):
  """Accuracies with leading (R runs, L learning rates) axes.

  train, test: (R, L) mean accuracy over all train / held-out images.
  train_per_class, test_per_class: (R, L, N) accuracy per class, in the order
  the classes were learned (position 0 = learned first).
  """
  train: jax.Array
  test: jax.Array
  train_per_class: jax.Array
  test_per_class: jax.Array


def split_drawings(images: jax.Array, classes: jax.Array, train_per_class: int):
  """Gathers a stream's images.

  Args:
    images: (C, D, ...) one side of a dataset (:class:`data.ClassSplit`).
    classes: (N,) class indices in learning order.
  Returns:
    (x_train (N * k, ...), y_train (N * k,), x_test (N * (D - k), ...),
    y_test (N * (D - k),)) with k = train_per_class; drawings [0, k) train,
    [k, D) held-out test. Labels are the class indices.
  """
  d = images.shape[1]
  sel = images[classes]
  x_tr = sel[:, :train_per_class].reshape((-1,) + sel.shape[2:])
  x_te = sel[:, train_per_class:].reshape((-1,) + sel.shape[2:])
  y_tr = jnp.repeat(classes, train_per_class)
  y_te = jnp.repeat(classes, d - train_per_class)
  return x_tr, y_tr.astype(jnp.int32), x_te, y_te.astype(jnp.int32)


def predictions(net: Network, params: Params, x: jax.Array, ctx, batch: int = 256):
  """(S,) argmax predictions, computed in batches of ``batch`` images."""
  def one(args):
    xi, ci = jax.tree.map(lambda a: a[None], args)
    return jnp.argmax(net.predict(params, xi, ci)[0])
  return jax.lax.map(one, (x, ctx), batch_size=batch)


def per_class_accuracy(pred: jax.Array, y: jax.Array, n: int) -> jax.Array:
  """(S,) predictions and labels, grouped by class in contiguous blocks of
  equal size -> (n,) accuracy per block."""
  return (pred == y).reshape(n, -1).mean(axis=1)


def make_stream_evaluator(net: Network, *, finetune_params: Sequence[str],
                          train_per_class: int, reset_head: bool = True,
                          eval_batch: int = 256, iid: bool = False) -> Callable:
  """Returns ``evaluate(params, keys, lrs, classes, images, ctx) -> StreamResult``.

  With ``iid`` each run learns its training images in a random order (the
  oracle); accuracies are still reported per class in the sampled order.

  Args (of the returned function):
    params: the (meta-)trained parameters.
    keys: (R,) PRNG keys, one per run (head re-initialisation; with ``iid``
      also the learning order).
    lrs: (L,) learning rates, all tried on every run.
    classes: (R, N) class indices of each run, in learning order.
    images: (C, D, ...) the dataset side the classes index: images
      (C, D, H, W, 1), or features (C, D, F) for :func:`models.head_only`.
    ctx: (C, D, F) context precomputed for every image, or None if the
      context's parameters are fine-tuned (then it is recomputed per step).
  """
  def one_run_one_lr(params, lr, stream, x_tr, y_tr, c_tr, x_te, y_te, c_te, n):
    # Adam with torch.optim.Adam's defaults (betas 0.9/0.999, eps 1e-8).
    learn = make_sequential_learner(net, optax.adam(lr), finetune_params)
    final, _ = learn(params, *stream)
    p_tr = predictions(net, final, x_tr, c_tr, eval_batch)
    p_te = predictions(net, final, x_te, c_te, eval_batch)
    return (jnp.mean(p_tr == y_tr), jnp.mean(p_te == y_te),
            per_class_accuracy(p_tr, y_tr, n), per_class_accuracy(p_te, y_te, n))

  def one_run(params, key, lrs, cls, images, ctx):
    n = cls.shape[0]
    if reset_head:
      params = reinit_head(params, net.head_path, key)
    x_tr, y_tr, x_te, y_te = split_drawings(images, cls, train_per_class)
    if ctx is None:
      c_tr = c_te = None
    else:
      c_tr, _, c_te, _ = split_drawings(ctx, cls, train_per_class)
    stream = (x_tr, y_tr, c_tr)
    if iid:
      order = jax.random.permutation(jax.random.fold_in(key, 1), y_tr.shape[0])
      stream = jax.tree.map(lambda a: a[order], stream)
    f = lambda lr: one_run_one_lr(params, lr, stream, x_tr, y_tr, c_tr, x_te, y_te,
                                  c_te, n)
    return jax.vmap(f)(lrs)

  def evaluate(params, keys, lrs, classes, images, ctx):
    out = jax.vmap(one_run, in_axes=(None, 0, None, 0, None, None))(
        params, keys, lrs, classes, images, ctx)
    return StreamResult(*out)

  return evaluate


def map_images(fn: Callable, images: jax.Array, batch: int = 512):
  """Applies ``fn`` ((B, ...) images -> (B, D), or a pytree of such) to every
  image of a dataset side, ``batch`` images at a time: (C, D, ...) ->
  (C, D, F) (the same pytree)."""
  flat = images.reshape((-1,) + images.shape[2:])
  out = jax.lax.map(lambda x: jax.tree.map(lambda a: a[0], fn(x[None])), flat,
                    batch_size=batch)
  return jax.tree.map(lambda a: a.reshape(images.shape[:2] + a.shape[1:]), out)


def compute_context(net: Network, params: Params, images: jax.Array,
                    batch: int = 512) -> jax.Array:
  """(C, D, H, W, 1) -> (C, D, C') context of every image, batched."""
  return map_images(lambda x: net.context(params, x), images, batch)


def compute_features(net: Network, params: Params, images: jax.Array,
                     batch: int = 512) -> jax.Array:
  """(C, D, H, W, 1) -> (C, D, F) head input of every image, batched."""
  return map_images(lambda x: net.head_input(params, x), images, batch)


def choose_lr(lrs: Sequence[float], scores: np.ndarray) -> tuple[float, list]:
  """The original's rule: each run votes for its best lr (first in list order
  on ties), the most voted lr wins (the smallest on ties, as scipy's mode).

  scores: (R, L). Returns (lr, votes per lr).
  """
  best = np.argmax(np.asarray(scores), axis=1)
  votes = np.bincount(best, minlength=len(lrs))
  top = np.flatnonzero(votes == votes.max())
  winner = min(top, key=lambda i: lrs[i])
  return float(lrs[winner]), votes.tolist()


def sample_classes(rng: np.random.Generator, pool: int, n: int, runs: int) -> np.ndarray:
  """(runs, n) distinct classes from range(pool) per run, sorted ascending as
  the original's dataset order (it learns the kept classes by index)."""
  if n > pool:
    raise ValueError(f"cannot sample {n} classes from a pool of {pool}")
  return np.stack([np.sort(rng.choice(pool, n, replace=False)) for _ in range(runs)])
