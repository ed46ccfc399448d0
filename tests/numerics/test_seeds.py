"""Seeds as a vmapped axis: K seeds in one program are K one-seed runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from anml_jax import configs, meta, methods
from tests.conftest import smoke_args, tiny_anml


def _cfg(**kw):
  cfg = configs.get_config("smoke", kw.get("method", "anml"))
  cfg.update(num_train_classes=12, **kw)
  cfg.model.update(nm_channels=2, pln_channels=3, num_outputs=12)
  return cfg


@pytest.mark.parametrize("method,zap", [("anml", "trajectory"), ("pretrain", "none"),
                                        ("asb", "none"), ("asb", "trajectory")])
def test_k_seeds_in_one_program_equal_k_one_seed_runs_float64(method, zap, x64):
  """float64: in float32 the conv biases before a norm, whose meta-gradient
  is zero in exact arithmetic, turn summation-order noise into +-lr Adam
  steps, so two exact-equal paths part by ~lr there (tests/slow/test_sharding.py).
  ASB with zapping: each seed draws its own rows from its own stream."""
  cfg = _cfg(method=method, zap=zap, seeds=2, first_order=True)   # vmap is blind to the order
  net = methods.network(cfg)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(12, 20, 28, 28, 1)))
  to64 = lambda t: jax.tree.map(
      lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
  stacked = to64(meta.init_state(cfg, net))
  step = methods.get(method).make_step(cfg, net)
  many = jax.jit(meta.over_seeds(step, 2))
  one = jax.jit(step)
  singles = []
  for s in meta.seed_list(cfg):
    c = _cfg(method=method, zap=zap, seed=s, first_order=True)
    singles.append(to64(meta.init_state(c, net)))
  for _ in range(2):
    stacked, m_many = many(stacked, images)
    outs = [one(st, images) for st in singles]
    singles = [o[0] for o in outs]
    np.testing.assert_allclose(m_many["loss"], [o[1]["loss"] for o in outs], rtol=1e-10)
  assert meta.steps_taken(stacked) == 2
  # atol: float64 noise on the zero-gradient biases, lr * 1e-17 / eps ~ 1e-12
  for i, single in enumerate(singles):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-9, atol=1e-9),
                 stacked, single)


def test_seeds_must_be_positive(tmp_path, capsys):
  assert train.main(["--workdir", str(tmp_path / "w"), *smoke_args(seeds=0)]) == 1
  assert "seeds=0 must be a positive integer" in capsys.readouterr().err


def test_split_seeds_keeps_a_one_seed_run_whole():
  cfg = configs.get_config("smoke")
  params = tiny_anml().init(jax.random.key(0))
  assert meta.split_seeds(cfg, params) == [(cfg, params)]
