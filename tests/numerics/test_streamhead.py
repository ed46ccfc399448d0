"""Meta-training through a closed-form head (method 'streamhead')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from anml_jax import configs, data, meta, methods, models
from tests.conftest import smoke_args, tiny_anml


def _ids(classes=6, drawings=8):
  """Images that name themselves: pixel (0, 0) holds the class, (0, 1) the
  drawing. (C, D, 4, 4, 1)."""
  x = np.zeros((classes, drawings, 4, 4, 1), np.float32)
  x[:, :, 0, 0, 0] = np.arange(classes)[:, None]
  x[:, :, 0, 1, 0] = np.arange(drawings)[None, :]
  return jnp.asarray(x)


def test_episode_holds_distinct_classes_and_disjoint_drawings():
  ep = data.sample_episode(jax.random.key(3), _ids(), ways=4, shots=3, queries=2)
  assert ep.x_sup.shape == (12, 4, 4, 1) and ep.x_qry.shape == (8, 4, 4, 1)
  np.testing.assert_array_equal(ep.y_sup, np.repeat(np.arange(4), 3))
  np.testing.assert_array_equal(ep.y_qry, np.repeat(np.arange(4), 2))
  cls_s = np.asarray(ep.x_sup[:, 0, 0, 0]).reshape(4, 3)
  cls_q = np.asarray(ep.x_qry[:, 0, 0, 0]).reshape(4, 2)
  assert (cls_s == cls_s[:, :1]).all() and (cls_q == cls_s[:, :2]).all()
  assert len(set(cls_s[:, 0])) == 4                 # distinct classes
  drw_s = np.asarray(ep.x_sup[:, 0, 1, 0]).reshape(4, 3)
  drw_q = np.asarray(ep.x_qry[:, 0, 1, 0]).reshape(4, 2)
  for s, q in zip(drw_s, drw_q):
    assert len(set(s) | set(q)) == 5                # no drawing both learnt and scored


def _episode(key, classes=5, drawings=6, ways=3, shots=2, queries=2):
  images = jax.random.normal(jax.random.key(0), (classes, drawings, 28, 28, 1))
  return data.sample_episode(key, images, ways=ways, shots=shots, queries=queries)


def _cfg(**kw):
  cfg = configs.get_config("smoke", "streamhead")
  cfg.update(dict(ways=3, shots=2, queries=2, **kw))
  return cfg


def test_prototype_meta_loss_is_the_prototypical_network_loss(x64):
  """With the prototype head the meta-loss is the cross-entropy of negative
  squared distances to the class means (Snell et al. 2017), scaled."""
  cfg, net = _cfg(head_scale=0.3), tiny_anml()
  params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(1)))
  ep = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a,
                    _episode(jax.random.key(2)))
  loss, acc = jax.jit(meta.make_head_meta_loss(cfg, net))(params, ep)
  f = jax.jit(lambda x: net.features(params, x, net.context(params, x)))
  mu = f(ep.x_sup).reshape(3, 2, -1).mean(1)
  d2 = jnp.sum((f(ep.x_qry)[:, None] - mu[None]) ** 2, -1)
  logp = jax.nn.log_softmax(-0.3 * d2)
  want = -jnp.mean(logp[jnp.arange(6), ep.y_qry])
  np.testing.assert_allclose(loss, want, rtol=1e-10)
  np.testing.assert_allclose(acc, jnp.mean(jnp.argmax(-d2, -1) == ep.y_qry))


@pytest.mark.parametrize("gated", [True, False])
def test_the_gradient_reaches_the_features_and_the_gate_only_when_gated(gated):
  cfg = _cfg()
  net = models.make_anml(nm_channels=2, pln_channels=3, num_outputs=7, conv_impl="xla",
                         gated=gated)
  params = net.init(jax.random.key(1))
  loss_fn = meta.make_head_meta_loss(cfg, net)
  grads = jax.jit(jax.grad(lambda p, ep: loss_fn(p, ep)[0]))(
      params, _episode(jax.random.key(2)))
  norm = lambda t: float(sum(jnp.sum(jnp.abs(a)) for a in jax.tree.leaves(t)))
  assert norm(grads["pln"]["features"]) > 0
  assert norm(grads["pln"]["head"]) == 0            # the output layer is not used
  assert (norm(grads["nm"]) > 0) == gated


def test_training_lowers_the_episode_loss_on_held_fixed_episodes():
  """40 steps on the synthetic classes lower the mean loss of 8 fixed
  episodes well below its value at initialisation."""
  cfg = _cfg(meta_lr=3e-3)
  images = jnp.asarray(data.synthetic().background)
  net = methods.network(cfg)
  loss_fn = jax.jit(jax.vmap(meta.make_head_meta_loss(cfg, net), in_axes=(None, 0)))
  eps = jax.vmap(lambda k: data.sample_episode(k, images, ways=3, shots=2, queries=2))(
      jax.random.split(jax.random.key(7), 8))
  state = meta.init_state(cfg, net)
  before = float(loss_fn(state.params, eps)[0].mean())
  chunk = jax.jit(meta.make_train_chunk(methods.get("streamhead").make_step(cfg, net), 40))
  state, metrics = chunk(state, images)
  after = float(loss_fn(state.params, eps)[0].mean())
  assert np.isfinite(metrics["loss"]).all() and after < 0.5 * before


def test_old_configs_load_gated():
  saved = configs.get_config("smoke", "anml").to_dict()
  del saved["model"]["gate"], saved["ways"], saved["head"]
  assert configs.from_dict(saved).model.gate


@pytest.mark.parametrize("flag, message", [
    ("--config.head=knn", "head='knn' must be a closed-form head"),
    ("--config.queries=19", "shots=2 + queries=19"),
    ("--config.ways=31", "ways=31 exceeds num_train_classes=30"),
    ("--config.head_reg=0", "head_reg=0"),
    ("--config.head_scale=-1", "head_scale=-1"),
])
def test_bad_config_is_named_and_nothing_is_written(tmp_path, capsys, flag, message):
  w = tmp_path / "w"
  assert train.main(["--workdir", str(w), *smoke_args("streamhead"), flag]) == 1
  assert message in capsys.readouterr().err and not w.exists()
