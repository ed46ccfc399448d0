import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import models


def test_paper_sizes():
  net = models.make_anml(conv_impl="xla")
  p = net.init(jax.random.key(0))
  shapes = jax.tree.map(jnp.shape, p)
  assert shapes["nm"]["trunk"]["conv1"]["kernel"] == (3, 3, 3, 112)
  assert shapes["nm"]["to_gate"]["linear"]["kernel"] == (1008, 2304)
  assert shapes["pln"]["features"]["conv3"]["kernel"] == (3, 3, 256, 256)
  assert shapes["pln"]["head"]["kernel"] == (2304, 1000)
  x = jnp.zeros((2, 28, 28, 1))
  assert net.context(p, x).shape == (2, 2304)
  assert net.apply(p, x).shape == (2, 1000)
  oml = models.make_oml(conv_impl="xla")
  q = oml.init(jax.random.key(0))
  assert oml.context(q, x).shape == (2, 2304)
  assert oml.apply(q, x).shape == (2, 1000)


def test_im2col_equals_xla_conv_values_and_grads():
  x = jax.random.normal(jax.random.key(0), (2, 11, 11, 5))
  k = jax.random.normal(jax.random.key(1), (3, 3, 5, 4))
  for stride in (1, 2):
    a = models.conv3x3(x, k, stride, "xla")
    b = models.conv3x3(x, k, stride, "im2col")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    ga = jax.grad(lambda k: jnp.sum(models.conv3x3(x, k, stride, "xla") ** 2))(k)
    gb = jax.grad(lambda k: jnp.sum(models.conv3x3(x, k, stride, "im2col") ** 2))(k)
    np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-4)


def test_networks_agree_across_conv_impls():
  a = models.make_anml(nm_channels=4, pln_channels=5, conv_impl="xla")
  b = models.make_anml(nm_channels=4, pln_channels=5, conv_impl="im2col")
  p = a.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1)) * 0.02
  np.testing.assert_allclose(a.apply(p, x), b.apply(p, x), rtol=1e-4, atol=1e-4)


def test_grey_conv_instance_norm_equals_conv_then_norm_to_second_order(x64):
  keys = jax.random.split(jax.random.key(0), 5)
  x = jax.random.normal(keys[0], (2, 9, 8, 1), jnp.float64)
  params = (jax.random.normal(keys[1], (3, 3, 3, 4), jnp.float64),     # kernel
            jax.random.normal(keys[2], (4,), jnp.float64),             # conv bias
            1 + 0.3 * jax.random.normal(keys[3], (4,), jnp.float64),   # norm scale
            jax.random.normal(keys[4], (4,), jnp.float64))             # norm shift

  def direct(kernel, bias, scale, shift):
    conv = models.Conv3x3(3, 4)
    norm = models.InstanceNorm(4)
    y = conv.apply({"params": {"kernel": kernel, "bias": bias}},
                   jnp.broadcast_to(x, x.shape[:-1] + (3,)))
    return norm.apply({"params": {"scale": scale, "bias": shift}}, y)

  def fused(kernel, bias, scale, shift):
    del bias   # cancels in the norm
    return models.grey_conv_instance_norm(x, kernel, scale, shift, 1e-5)

  np.testing.assert_allclose(fused(*params), direct(*params), rtol=1e-10, atol=1e-10)

  def loss(f):
    return lambda *p: jnp.sum(jnp.sin(f(*p)) * jnp.arange(1.0, 5.0))

  g_direct = jax.grad(loss(direct), argnums=(0, 1, 2, 3))(*params)
  g_fused = jax.grad(loss(fused), argnums=(0, 1, 2, 3))(*params)
  for a, b in zip(g_fused, g_direct):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
  assert float(jnp.abs(g_fused[1]).max()) == 0.0   # the bias has no effect

  def grad_norm(f):   # a function of the gradient, as an inner SGD step makes
    return lambda *p: sum(jnp.sum(g ** 2) for g in jax.grad(loss(f), argnums=(0, 2, 3))(*p))

  h_direct = jax.grad(grad_norm(direct), argnums=(0, 2, 3))(*params)
  h_fused = jax.grad(grad_norm(fused), argnums=(0, 2, 3))(*params)
  for a, b in zip(h_fused, h_direct):
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)


def test_instance_norm_normalises_each_image_and_channel():
  x = 3 + 2 * jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  norm = models.InstanceNorm(3)
  y = norm.apply(norm.init(jax.random.key(0), x), x)
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-3)


def test_max_pool_floor_mode():
  x = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
  y = models.max_pool_2x2(x)
  assert y.shape == (2, 2, 2, 1)
  assert float(y[0, 0, 0, 0]) == float(x[0, 1, 1, 0])


def test_kaiming_init_scale():
  p = models.make_anml(conv_impl="xla").init(jax.random.key(0))
  k = p["pln"]["features"]["conv2"]["kernel"]
  assert abs(float(k.std()) - np.sqrt(2 / (9 * 256))) < 0.002
  assert float(jnp.abs(p["pln"]["head"]["bias"]).max()) == 0.0


def test_reinit_head_rows_touches_only_those_units():
  net = models.make_anml(nm_channels=2, pln_channels=3, num_outputs=6,
                         conv_impl="xla")
  p = net.init(jax.random.key(0))
  p["pln"]["head"]["bias"] = jnp.arange(6.0)
  q = models.reinit_head(p, net.head_path, jax.random.key(5), jnp.array([2, 4]))
  k0, k1 = p["pln"]["head"]["kernel"], q["pln"]["head"]["kernel"]
  changed = np.any(np.asarray(k0 != k1), axis=0)
  assert changed.tolist() == [False, False, True, False, True, False]
  np.testing.assert_array_equal(q["pln"]["head"]["bias"], jnp.arange(6.0))
  r = models.reinit_head(p, net.head_path, jax.random.key(5))
  assert float(jnp.abs(r["pln"]["head"]["bias"]).max()) == 0.0
  assert bool(jnp.all(r["pln"]["head"]["kernel"] != k0))
