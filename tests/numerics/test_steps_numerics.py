"""The training step built from parts: each part, the registry, and a method
registered from outside the package."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anml_jax import configs, data, meta, methods, models, steps
from anml_jax.learner import cross_entropy


def test_asb_estimator_is_sgd_on_the_trajectory_then_the_gradient_at_the_adapted_weights(x64):
  """float64, against the two phases written out: SGD one image at a time on
  every parameter, no gradient through it; then the remember-set gradient
  at the adapted weights (which the outer update applies to)."""
  cfg = configs.get_config("smoke", "asb")
  cfg.update(inner_lr=0.3, num_train_classes=6)
  net = models.make_anml(nm_channels=2, pln_channels=3, num_outputs=6, conv_impl="xla",
                         gated=True)
  to64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
  params = to64(net.init(jax.random.key(0)))
  images = jnp.asarray(np.random.default_rng(0).normal(size=(6, 20, 28, 28, 1)))
  tasks = steps.trajectories(cfg, net)(jax.random.key(3), images)
  at, grads, loss, aux = jax.jit(steps.asb(cfg, net))(params, tasks)

  ce = lambda p, x, y: cross_entropy(net.apply(p, x), y)
  grad = jax.jit(jax.grad(ce))         # jitted: one compile, not one per eager op
  p = params
  for t in range(cfg.traj_len):
    g = grad(p, tasks.x_traj[0, t:t + 1], tasks.y_traj[0, t:t + 1])
    p = jax.tree.map(lambda a, b: a - cfg.inner_lr * b, p, g)
  want_loss, want_grads = jax.jit(jax.value_and_grad(ce))(p, tasks.x_rem[0], tasks.y_rem[0])
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
  jax.tree.map(close, at, p)
  jax.tree.map(close, grads, want_grads)
  close(loss, want_loss)
  assert float(optax.tree.norm(grads["nm"])) > 0     # gated: the NM learns too
  assert set(aux) == {"inner_loss", "accuracy"}


def test_asb_step_carries_the_adapted_weights_into_the_adam_step(x64):
  """float64: the conv biases before a norm have a gradient that is zero in
  exact arithmetic; Adam (eps 1e-8) turns its rounding noise into steps of
  +-lr in float32 and about 1e-12 in float64, hence atol 1e-10."""
  cfg = configs.get_config("smoke", "asb")
  cfg.update(num_train_classes=6)
  cfg.model.update(num_outputs=6)
  net = methods.network(cfg)
  images = jnp.asarray(data.synthetic(0, background=6, evaluation=1).background,
                       jnp.float64)
  state = meta.init_state(cfg, net)
  state = state._replace(params=jax.tree.map(lambda a: a.astype(jnp.float64), state.params))
  state = state._replace(opt_state=optax.adam(cfg.meta_lr).init(state.params))
  new, _ = jax.jit(methods.get("asb").make_step(cfg, net))(state, images)
  k_step = jax.random.split(jax.random.wrap_key_data(state.key))[1]
  at, grads, _, _ = jax.jit(steps.make_gradient(cfg, net, sampler=steps.trajectories,
                                                estimator=steps.asb))(state.params, k_step, images)
  updates, _ = optax.adam(cfg.meta_lr).update(grads, state.opt_state, at)
  want = optax.apply_updates(at, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10),
               new.params, want)
  # the ungated network (asb's default, as Frati et al.'s) gives its NM no gradient
  assert float(optax.tree.norm(new.params["nm"])) == float(optax.tree.norm(state.params["nm"]))


def test_uint8_images_on_the_device_give_the_float_path_s_values():
  """train.py keeps the images uint8 (a quarter of the float32 copy) and the
  step normalises what it samples by a table of preprocess's 256 values, so
  the images are the float path's exactly; the gradients agree up to float
  tolerance (two compiled programs)."""
  raw = data.synthetic(0, background=8, evaluation=1, raw=True).background
  flt = data.synthetic(0, background=8, evaluation=1).background
  assert raw.dtype == np.uint8 and raw.nbytes * 4 == flt.nbytes
  np.testing.assert_array_equal(jax.jit(data.to_float)(raw), flt)   # by construction
  cfg = configs.get_config("smoke", "anml")
  cfg.update(num_train_classes=8)
  cfg.model.update(num_outputs=8)
  net = methods.network(cfg)
  params = net.init(jax.random.key(0))
  grad = jax.jit(steps.make_gradient(cfg, net, sampler=steps.trajectories,
                                     estimator=steps.unrolled, batch_key="meta_batch"))
  _, g_raw, loss_raw, _ = grad(params, jax.random.key(1), jnp.asarray(raw))
  _, g_flt, loss_flt, _ = grad(params, jax.random.key(1), jnp.asarray(flt))
  np.testing.assert_allclose(loss_raw, loss_flt, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               g_raw, g_flt)
