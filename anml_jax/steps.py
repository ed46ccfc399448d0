"""The training step, built from parts.

A step is ``step(state, images) -> (state, metrics)`` (:class:`meta.MetaState`;
images (C, D, H, W, 1), the training classes' drawings, uint8 as kept on the
device or float; a sampled batch is normalised inside the step,
:func:`data.to_float`). It is composed by
:func:`make_step` from four parts, each a factory over ``(cfg, net)`` that
returns a pure function:

- a **sampler** ``sample(key, images) -> batch``: a meta-batch of
  trajectories with their remember sets (:func:`trajectories`), an i.i.d.
  batch (:func:`iid_batches`) or a many-class episode (:func:`episodes`);
- a **reset hook** ``reset(params, key, step, batch, images) -> params``
  (:data:`ZAPS`: none; zap the head rows of the trajectory's classes; zap
  every row at each epoch's start);
- a **gradient estimator** ``estimate(params, batch) -> (params_at, grads,
  loss, aux)``: through the unrolled inner loop, second or first order
  (:func:`unrolled`); none, the plain loss (:func:`direct`); ASB's "learn the
  trajectory by SGD, then a batch step from the adapted weights"
  (:func:`asb`); or through a closed-form head (:func:`through_head`).
  ``params_at`` are the parameters the outer update applies to;
- the **outer optimiser** (``meta.make_optimizer``, Adam, unless the method names another).

The methods of :mod:`anml_jax.methods` are entries naming their parts.
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from anml_jax import data as data_lib
from anml_jax import meta, sharding
from anml_jax.learner import cross_entropy, make_sgd_learner
from anml_jax.models import Network, get_path, reinit_head

# Samplers -------------------------------------------------------------------
# Each gets the step's key. The trajectory sampler draws from the first half
# of its split and the reset hook gets the second (``reset_key``); the other
# samplers draw from the key itself, as they did before the step was split
# into parts (the parameters of every earlier run are reproduced bit for
# bit: bench/numerics_unchanged.py).


def reset_key(key: jax.Array) -> jax.Array:
  """The reset hook's key: the second half of the step key's split."""
  return jax.random.split(key)[1]


def trajectories(cfg, net: Network) -> Callable:
  """``cfg.meta_batch`` tasks (:func:`data.sample_tasks`): a trajectory of
  ``cfg.traj_len`` drawings of one class, and the remember set."""
  del net

  def sample(key, images):
    return data_lib.sample_tasks(
        jax.random.split(key)[0], images, meta_batch=cfg.meta_batch,
        traj_len=cfg.traj_len, remember_size=cfg.remember_size)

  return sample


def iid_batches(cfg, net: Network) -> Callable:
  """``(x, y)``: ``cfg.pretrain_batch`` images drawn uniformly from the
  drawings not held out (the last ``cfg.holdout_drawings`` of each class),
  each moved by up to ``cfg.shift`` pixels (:func:`data.random_shifts`; its
  key folded from the step's, so that shift 0 draws what it always did)."""
  del net

  def sample(key, images):
    kept = images.shape[1] - cfg.holdout_drawings
    x, y = data_lib.sample_iid_batch(key, images[:, :kept], cfg.pretrain_batch)
    return data_lib.random_shifts(jax.random.fold_in(key, 1), x, cfg.shift), y

  return sample


def episodes(cfg, net: Network) -> Callable:
  """A :class:`data.Episode` of ``cfg.ways`` classes, ``cfg.shots`` support
  and ``cfg.queries`` query drawings each."""
  del net
  return lambda key, images: data_lib.sample_episode(
      key, images, ways=cfg.ways, shots=cfg.shots, queries=cfg.queries)


# Reset hooks ----------------------------------------------------------------


def no_reset(cfg, net: Network) -> Callable:
  del cfg, net
  return lambda params, key, step, batch, images: params


def zap_trajectory(cfg, net: Network) -> Callable:
  """Redraws the head rows of the batch's trajectory classes (bias kept)
  before every step: the original ANML's ``reset_classifer``, Frati et al.'s
  zapping in meta-training and ASB. ``cfg.zap_scale`` 'block' takes Kaiming's
  std over the rows drawn together (:func:`models.reinit_head`)."""
  block = cfg.zap_scale == "block"

  def reset(params, key, step, batch, images):
    del step, images
    return reinit_head(params, net.head_path, key, batch.y_traj[:, 0], block=block)

  return reset


def epoch_steps(cfg, images_shape) -> int:
  """Steps per epoch of i.i.d. pretraining over images (C, D, ...): the
  drawings not held out, ``cfg.pretrain_batch`` at a time (rounded up)."""
  c, d = images_shape[:2]
  return math.ceil(c * (d - cfg.holdout_drawings) / cfg.pretrain_batch)


def zap_epoch(cfg, net: Network) -> Callable:
  """Redraws every head row (bias kept) at the start of every epoch after the
  first (:func:`epoch_steps`), as Frati et al.'s i.i.d. zapping (their
  Omniglot config: all 1,000 rows, every epoch). ``cfg.zap_scale``: 'row'
  (each row's Kaiming std) or 'block' (theirs, 1/sqrt(rows) smaller)."""
  block = cfg.zap_scale == "block"

  def reset(params, key, step, batch, images):
    del batch
    every = epoch_steps(cfg, images.shape)
    rows = jnp.arange(get_path(params, net.head_path)["kernel"].shape[1])
    return jax.lax.cond(
        (step > 0) & (step % every == 0),
        lambda p: reinit_head(p, net.head_path, key, rows, block=block),
        lambda p: p, params)

  return reset


# config ``zap`` -> reset hook.
ZAPS: dict[str, Callable] = {"none": no_reset, "trajectory": zap_trajectory,
                             "epoch": zap_epoch}


# Gradient estimators ---------------------------------------------------------


def unrolled(cfg, net: Network) -> Callable:
  """Through the whole inner trajectory (:func:`meta.make_meta_loss`, second
  order unless ``cfg.first_order``), averaged over the meta-batch (vmap)."""
  meta_loss = meta.make_meta_loss(cfg, net)

  def batched_loss(params, tasks):
    losses, aux = jax.vmap(meta_loss, in_axes=(None, 0))(params, tasks)
    return losses.mean(), jax.tree.map(jnp.mean, aux)

  def estimate(params, tasks):
    (loss, aux), grads = jax.value_and_grad(batched_loss, has_aux=True)(params, tasks)
    return params, grads, loss, aux

  return estimate


def _supervised_loss(net: Network):
  def loss_fn(params, x, y):
    logits = net.apply(params, x)
    return cross_entropy(logits, y), {"accuracy": jnp.mean(logits.argmax(-1) == y)}
  return loss_fn


def direct(cfg, net: Network) -> Callable:
  """No meta-gradient: the cross-entropy of a batch ``(x, y)``."""
  del cfg
  loss_fn = _supervised_loss(net)

  def estimate(params, batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *batch)
    return params, grads, loss, aux

  return estimate


def asb(cfg, net: Network) -> Callable:
  """Alternating sequential and batch learning (Frati et al. 2023): plain
  SGD (``cfg.inner_lr``, one image per step) on ``cfg.inner_params`` over
  the trajectory, with no gradient through it; then the gradient of the
  remember-set loss at the adapted weights, which the outer step updates
  (the weights carry over). One task per step (``meta_batch`` 1)."""
  learn = make_sgd_learner(net, cfg.inner_lr, cfg.inner_params,
                           low_rank_head=cfg.low_rank_head, unroll=cfg.unroll)
  loss_fn = _supervised_loss(net)

  def estimate(params, tasks):
    task = jax.tree.map(lambda a: a[0], tasks)
    adapted, losses = learn(params, task.x_traj, task.y_traj)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        adapted, task.x_rem, task.y_rem)
    return adapted, grads, loss, {"inner_loss": losses.mean(), **aux}

  return estimate


def through_head(cfg, net: Network) -> Callable:
  """Through a closed-form head learning an episode
  (:func:`meta.make_head_meta_loss`)."""
  loss_fn = meta.make_head_meta_loss(cfg, net)

  def estimate(params, episode):
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, episode)
    return params, grads, loss, {"accuracy": acc}

  return estimate


# The step --------------------------------------------------------------------


def make_gradient(cfg, net: Network, mesh=None, *, sampler: Callable,
                  estimator: Callable, batch_key: str | None = None) -> Callable:
  """``gradient(params, key, images, step=0) -> (params_at, grads, loss,
  aux)``: samples a batch with ``key``, applies the reset ``cfg.zap``
  (:data:`ZAPS`), estimates the gradient.

  mesh: optional :func:`sharding.make_mesh`; with ``batch_key`` (the config
  key of the batch size, e.g. 'meta_batch') the sampled batch is split over
  its devices (that size must be a multiple of the mesh's), params and images
  are expected replicated; without, the mesh is not used.
  """
  if batch_key is not None:
    sharding.check_divisible(cfg[batch_key], mesh, batch_key)
  sample, estimate = sampler(cfg, net), estimator(cfg, net)
  reset = ZAPS[cfg.zap](cfg, net)

  def gradient(params, key, images, step=0):
    batch = data_lib.as_float(sample(key, images))
    if batch_key is not None:
      batch = sharding.constrain_batch(batch, mesh)
    params = reset(params, reset_key(key), step, batch, images)
    return estimate(params, batch)

  return gradient


def make_step(cfg, net: Network, mesh=None, *, sampler: Callable,
              estimator: Callable, batch_key: str | None = None,
              optimizer: Callable = meta.make_optimizer) -> Callable:
  """Returns a pure ``step(state, images) -> (state, metrics)``; jit it.

  One ``optimizer(cfg)`` update of the parameters the estimator returns, on
  its gradient (:func:`make_gradient`, same ``mesh`` and ``batch_key``).
  metrics: 'loss', the estimator's aux (e.g. 'accuracy', 'inner_loss'),
  'grad_norm', 'nm_grad_norm' (the gradient's norm over the context
  parameters, the NM for ANML).
  """
  gradient = make_gradient(cfg, net, mesh, sampler=sampler, estimator=estimator,
                           batch_key=batch_key)
  opt = optimizer(cfg)

  def step(state: meta.MetaState, images: jax.Array):
    key, k_step = jax.random.split(jax.random.wrap_key_data(state.key))
    params, grads, loss, aux = gradient(state.params, k_step, images, state.step)
    updates, opt_state = opt.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads),
               "nm_grad_norm": optax.tree.norm([grads[k] for k in net.context_keys])}
    return meta.MetaState(params, opt_state, jax.random.key_data(key),
                          state.step + 1), metrics

  return step


def make_meta_train_step(cfg, net: Network, mesh=None) -> Callable:
  """ANML's and OML's step: :func:`make_step` with the trajectory sampler and
  the unrolled estimator. metrics: 'loss', 'inner_loss', 'accuracy'
  (remember set after the inner loop), 'grad_norm', 'nm_grad_norm'."""
  return make_step(cfg, net, mesh, sampler=trajectories, estimator=unrolled,
                   batch_key="meta_batch")
