import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anml_jax import gating
from tests.conftest import tiny_anml


def test_gate_is_sigmoid_product_and_in_unit_interval():
  f = jax.random.normal(jax.random.key(0), (4, 6))
  z = 5 * jax.random.normal(jax.random.key(1), (4, 6))
  g = gating.gate_values(z)
  assert bool(jnp.all((g > 0) & (g < 1)))
  np.testing.assert_allclose(gating.gate(f, z), f / (1 + np.exp(-np.asarray(z))),
                             rtol=1e-6)


def test_gate_width_mismatch_is_a_clear_error():
  with pytest.raises(ValueError, match="width"):
    gating.gate(jnp.ones((2, 3)), jnp.ones((2, 4)))


def test_anml_gates_lie_in_open_unit_interval():
  net = tiny_anml()
  params = net.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (5, 28, 28, 1))
  g = gating.gate_values(net.context(params, x))
  assert g.shape == (5, 27)
  assert bool(jnp.all((g > 0) & (g < 1)))


# The example from docs/gating.md: gate a user's own Flax model.
class UserMLP(nn.Module):
  width: int = 8

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))


def test_gated_composes_with_a_user_flax_model_and_gates_plasticity():
  feat, mod = UserMLP(8), UserMLP(8)
  x = jax.random.normal(jax.random.key(0), (3, 10))
  params = {"features": feat.init(jax.random.key(1), x),
            "modulator": mod.init(jax.random.key(2), x)}
  model = gating.gated(feat.apply, mod.apply)
  y = jax.jit(model)(params, x)
  np.testing.assert_allclose(
      y, feat.apply(params["features"], x)
      * jax.nn.sigmoid(mod.apply(params["modulator"], x)), rtol=1e-6)

  # Selective plasticity: a closed gate blocks the gradient into the weights
  # of the features it closes; an open gate lets it through.
  def loss(fp, gate_bias):
    return jnp.sum(gating.gate(feat.apply(fp, x), gate_bias))

  live = int(jnp.argmax(feat.apply(params["features"], x).sum(0)))  # a unit ReLU keeps
  closed = jnp.full((8,), -1e4).at[live].set(1e4)  # only that unit open
  g = jax.grad(loss)(params["features"], closed)["params"]["Dense_0"]["kernel"]
  assert float(jnp.abs(jnp.delete(g, live, axis=1)).max()) == 0.0
  assert float(jnp.abs(g[:, live]).max()) > 0.0


def test_gated_module_equals_the_functional_form():
  """gating.Gated (Flax module) and gating.gated (functions) compute the same
  gated features from the same parameters."""
  model = gating.Gated(UserMLP(8), UserMLP(8))
  x = jax.random.normal(jax.random.key(0), (3, 10))
  v = model.init(jax.random.key(1), x)
  assert set(v["params"]) == {"features", "modulator"}
  fn = gating.gated(lambda p, x: UserMLP(8).apply({"params": p}, x),
                    lambda p, x: UserMLP(8).apply({"params": p}, x))
  want = fn(v["params"], x)
  assert float(jnp.abs(want).max()) > 0      # not a trivially zero comparison
  np.testing.assert_allclose(model.apply(v, x), want, rtol=1e-6, atol=1e-7)
