"""The small meta-training and meta-test case shared by tests/slow/test_sharding.py
and the 4-device worker it starts (tests/slow/sharded_worker.py)."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from anml_jax import configs, data, meta, methods, steps
from tests import conftest

META_BATCH = 4


def meta_setup():
  """(cfg, net, state, images): smoke-sized ANML, meta-batch 4."""
  cfg = configs.get_config("smoke")
  cfg.meta_batch = META_BATCH
  cfg.num_train_classes = 12
  cfg.model.update(nm_channels=4, pln_channels=6, num_outputs=12)
  net = methods.network(cfg)
  images = jnp.asarray(data.synthetic(1, background=12, evaluation=8).background)
  return cfg, net, meta.init_state(cfg, net), images


SEEDS = 4


def seeds_setup():
  """(cfg, net, stacked state, images): :func:`meta_setup` with 4 seeds
  trained in one program, a meta-batch of 1, first order (the cheapest
  compile; the split is over seeds either way)."""
  cfg, net, _, images = meta_setup()
  cfg.meta_batch, cfg.seeds, cfg.first_order = 1, SEEDS, True
  return cfg, net, meta.init_state(cfg, net), images


def seeds_step(cfg, net):
  return jax.jit(meta.over_seeds(steps.make_meta_train_step(cfg, net), cfg.seeds))


def meta_step(cfg, net, mesh=None):
  return jax.jit(steps.make_meta_train_step(cfg, net, mesh))


def meta_gradient(cfg, net, mesh=None):
  return jax.jit(steps.make_gradient(cfg, net, mesh, sampler=steps.trajectories,
                                     estimator=steps.unrolled, batch_key="meta_batch"))


KEY = jax.random.key(3)


def eval_setup():
  """(net, params, omniglot, eval config): the toy network on coded images,
  whose logits are exact (tests/conftest.py), so the sharded and single-device
  predictions can be compared exactly; 3 runs, so 4 devices need padding."""
  net = conftest.toy_net(12)
  coded = np.asarray(conftest.coded_images(12))
  omni = data.ClassSplit(coded, coded[:8], [], [])
  ecfg = configs.get_eval_config("smoke")
  ecfg.runs, ecfg.search_runs = 3, 2
  ecfg.search_pool, ecfg.class_pool = 12, 8
  ecfg.lrs = (3e-2, 3e-1)
  return net, net.init(jax.random.key(0)), omni, ecfg


def flat(params):
  return traverse_util.flatten_dict(jax.device_get(params), sep="/")
