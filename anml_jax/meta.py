"""Meta-state, the meta-losses and the jitted chunk of steps.

The steps themselves are composed from parts in :mod:`anml_jax.steps`. The
meta-loss is the loss of the inner-loop-adapted network on the remember
set (random images of all meta-train classes plus the trajectory class),
differentiated through the whole inner trajectory with respect to the initial
parameters of every network (second order unless ``first_order``).
"""
import copy
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anml_jax import data as data_lib
from anml_jax import heads, sharding
from anml_jax.learner import (
  context_is_static,
  cross_entropy,
  make_sequential_learner,
  make_sgd_learner,
)
from anml_jax.models import Network
from anml_jax.types import Params


class MetaState(NamedTuple):
  """Everything a run needs to continue exactly.

  params: meta-parameters. opt_state: the outer optimiser's state (Adam
  unless the method names another). key: (2,) uint32 raw PRNG
  key data. step: () int32, meta-steps taken.
  """
  params: Params
  opt_state: Any
  key: jax.Array
  step: jax.Array


def make_optimizer(cfg) -> optax.GradientTransformation:
  """The outer (meta) optimiser: Adam(meta_lr), as the original."""
  return optax.adam(cfg.meta_lr)


INNER_OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


def make_inner_optimizer(cfg) -> optax.GradientTransformation:
  """The inner loop's optimiser: ``cfg.inner_optimizer`` at ``cfg.inner_lr``
  (the paper's is plain SGD)."""
  return INNER_OPTIMIZERS[cfg.inner_optimizer](cfg.inner_lr)


def seed_list(cfg) -> list[int]:
  """The meta-training seeds of a run: ``cfg.seed``, ``cfg.seed + 1``, ...,
  ``cfg.seeds`` of them."""
  return [int(cfg.seed) + i for i in range(int(cfg.seeds))]


def init_state(cfg, net: Network, optimizer: Callable = make_optimizer) -> MetaState:
  """Fresh meta-state from ``cfg.seed``, its optimiser state that of
  ``optimizer(cfg)`` (the method's, ``methods.Method.optimizer``); with
  ``cfg.seeds`` = K > 1, the K states of :func:`seed_list` stacked on a
  leading (K,) axis of every leaf, each the state a one-seed run of that seed
  starts from."""
  if cfg.seeds > 1:
    states = [_init_one(s, cfg, net, optimizer) for s in seed_list(cfg)]
    return jax.tree.map(lambda *a: jnp.stack(a), *states)
  return _init_one(cfg.seed, cfg, net, optimizer)


def _init_one(seed: int, cfg, net: Network, optimizer: Callable) -> MetaState:
  k_init, k_run = jax.random.split(jax.random.key(seed))
  params = net.init(k_init)
  opt_state = optimizer(cfg).init(params)
  return MetaState(params, opt_state, jax.random.key_data(k_run),
                   jnp.zeros((), jnp.int32))


def steps_taken(state: MetaState) -> int:
  """The meta-steps a (possibly stacked) state has taken: the seeds of one
  run step together."""
  return int(np.asarray(sharding.to_host(state.step)).reshape(-1)[0])


def split_seeds(cfg, params: Params) -> list[tuple]:
  """``[(config, params)]`` per seed of a run: the one-seed configs
  (``seed`` = each of :func:`seed_list`, ``seeds`` = 1) and each seed's slice
  of stacked ``params``; a one-seed run as it is."""
  if cfg.seeds == 1:
    return [(cfg, params)]
  out = []
  for i, s in enumerate(seed_list(cfg)):
    c = copy.deepcopy(cfg)
    c.seed, c.seeds = s, 1
    out.append((c, jax.tree.map(lambda a, i=i: a[i], params)))
  return out


def over_seeds(step_fn: Callable, seeds: int) -> Callable:
  """``step_fn`` on a stacked state of ``seeds`` > 1 seeds (vmap; the data
  shared); metrics get a leading (seeds,) axis. ``step_fn`` itself for one."""
  return step_fn if seeds == 1 else jax.vmap(step_fn, in_axes=(0, None))


def make_meta_loss(cfg, net: Network) -> Callable:
  """Returns ``meta_loss(params, task) -> (loss, aux)`` for one unbatched task.

  task: :class:`data.TaskBatch` without the meta-batch axis, i.e. x_traj
  (T, H, W, 1), y_traj (T,), x_rem (R + T, H, W, 1), y_rem (R + T,).
  aux: dict of scalars 'inner_loss' (mean over the trajectory), 'accuracy'
  (remember set, after adaptation).
  """
  kw = dict(first_order=cfg.first_order, remat=cfg.remat, unroll=cfg.unroll)
  if cfg.inner_optimizer == "sgd":
    inner = make_sgd_learner(net, cfg.inner_lr, cfg.inner_params,
                             low_rank_head=cfg.low_rank_head, **kw)
  else:
    inner = make_sequential_learner(net, make_inner_optimizer(cfg), cfg.inner_params, **kw)
  static_ctx = context_is_static(net, cfg.inner_params)

  def meta_loss(params, task):
    t = task.x_traj.shape[0]
    ctx_traj = ctx_rem = None       # None: recomputed from the adapted params
    if static_ctx:
      ctx = net.context(params, jnp.concatenate([task.x_traj, task.x_rem]))
      ctx_traj, ctx_rem = ctx[:t], ctx[t:]
    adapted, losses = inner(params, task.x_traj, task.y_traj, ctx_traj)
    logits = net.predict(adapted, task.x_rem, ctx_rem)
    loss = cross_entropy(logits, task.y_rem)
    acc = jnp.mean(jnp.argmax(logits, -1) == task.y_rem)
    return loss, {"inner_loss": losses.mean(), "accuracy": acc}

  return meta_loss


def make_head_meta_loss(cfg, net: Network) -> Callable:
  """Returns ``loss(params, episode) -> (loss, accuracy)``: the closed-form
  head ``cfg.head`` learns the episode's support stream in one pass (its
  statistics accumulated by a scan, one class per scan step), and the loss
  is the cross-entropy of ``cfg.head_scale`` times its logits on the
  queries.

  episode: :class:`data.Episode`. The gradient flows through the readout and
  the scan into the features (ANML: the PLN's and, through the gate, the
  NM's parameters); the output layer is not used.
  """
  head = heads.get(cfg.head)

  def loss_fn(params, ep):
    x = jnp.concatenate([ep.x_sup, ep.x_qry])
    f = net.head_input(params, x)
    s = ep.x_sup.shape[0]
    w, b = heads.fit(head, f[:s], ep.y_sup, cfg.ways, cfg.head_reg, block=cfg.shots)
    logits = cfg.head_scale * (heads.prepare(head, f[s:]) @ w + b)
    return cross_entropy(logits, ep.y_qry), jnp.mean(logits.argmax(-1) == ep.y_qry)

  return loss_fn


def make_holdout_accuracy(cfg, net: Network, batch: int = 256) -> Callable:
  """``accuracy(params, images) -> ()``: the network's accuracy at naming the
  class of the last ``cfg.holdout_drawings`` drawings of every class of
  ``images`` (C, D, H, W, 1), the drawings pretraining
  (:func:`steps.iid_batches`) leaves out; ``batch`` images at a time. A
  validation score for choosing a pretraining budget."""
  k = cfg.holdout_drawings

  def accuracy(params, images):
    held = data_lib.to_float(images[:, images.shape[1] - k:])
    x = held.reshape((-1,) + held.shape[2:])
    y = jnp.repeat(jnp.arange(images.shape[0]), k)
    pred = jax.lax.map(lambda xi: jnp.argmax(net.apply(params, xi[None])[0]), x,
                       batch_size=batch)
    return jnp.mean(pred == y)

  return accuracy


def make_train_chunk(step_fn: Callable, num_steps: int) -> Callable:
  """``chunk(state, images) -> (state, metrics)`` running ``num_steps`` steps
  in one ``lax.scan`` (one dispatch, no host sync); metrics get a leading
  (num_steps,) axis (then the seeds', for :func:`over_seeds`)."""

  def chunk(state, images):
    return jax.lax.scan(lambda s, _: step_fn(s, images), state, None,
                        length=num_steps)

  return chunk
