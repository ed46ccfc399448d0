import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anml_jax import learner
from tests.conftest import tiny_anml, tiny_oml


def _traj(t=4, k=7):
  x = 0.05 * jax.random.normal(jax.random.key(1), (t, 28, 28, 1))
  y = jnp.arange(t) % k
  return x, y


@pytest.mark.parametrize("make", [tiny_anml, tiny_oml])
def test_scan_equals_python_loop(make):
  net = make()
  params = net.init(jax.random.key(0))
  x, y = _traj()
  inner = learner.make_sequential_learner(net, optax.sgd(0.1), ("pln",))
  ctx = net.context(params, x)
  got, losses = jax.jit(inner)(params, x, y, ctx)

  p = params
  ref_losses = []
  for i in range(x.shape[0]):
    def loss(pln):
      q = {**p, "pln": pln}
      return learner.cross_entropy(net.apply(q, x[i:i + 1]), y[i:i + 1])
    l, g = jax.value_and_grad(loss)(p["pln"])
    ref_losses.append(l)
    p = {**p, "pln": jax.tree.map(lambda a, b: a - 0.1 * b, p["pln"], g)}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               got, p)
  np.testing.assert_allclose(losses, jnp.stack(ref_losses), rtol=1e-5)


def _sgd_case(fast):
  """(net, params, x, y, learn): a tiny ANML, a 4-image trajectory and the
  SGD(0.1) learner of the parameters under ``fast``."""
  net = tiny_anml()
  x, y = _traj()
  return (net, net.init(jax.random.key(0)), x, y,
          learner.make_sequential_learner(net, optax.sgd(0.1), fast))


def test_context_inside_scan_matches_precomputed_when_context_is_frozen():
  net, params, x, y, inner = _sgd_case(("pln",))
  a, _ = inner(params, x, y, net.context(params, x))
  b, _ = inner(params, x, y, None)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)


def test_frozen_parameters_untouched_and_fast_ones_move():
  net, params, x, y, inner = _sgd_case(("pln/head",))
  adapted, _ = inner(params, x, y, net.context(params, x))
  for k in ("nm",):
    jax.tree.map(np.testing.assert_array_equal, adapted[k], params[k])
  jax.tree.map(np.testing.assert_array_equal, adapted["pln"]["features"],
               params["pln"]["features"])
  assert not np.array_equal(adapted["pln"]["head"]["kernel"],
                            params["pln"]["head"]["kernel"])


def test_one_step_closed_form_for_the_head_bias():
  # d CE / d bias = softmax(logits) - onehot(y): one SGD step is closed-form.
  net = tiny_anml(num_outputs=5)
  params = net.init(jax.random.key(3))
  x, y = _traj(t=1, k=5)
  inner = learner.make_sequential_learner(net, optax.sgd(0.7), ("pln/head/bias",))
  adapted, _ = inner(params, x, y, net.context(params, x))
  probs = jax.nn.softmax(net.apply(params, x)[0])
  expected = params["pln"]["head"]["bias"] - 0.7 * (probs - jax.nn.one_hot(y[0], 5))
  np.testing.assert_allclose(adapted["pln"]["head"]["bias"], expected, rtol=1e-5,
                             atol=1e-7)


def test_partition_rejects_unknown_prefix():
  net = tiny_anml()
  with pytest.raises(ValueError, match="matches no parameter"):
    learner.partition(net.init(jax.random.key(0)), ("plm",))


def test_remat_and_unroll_do_not_change_results():
  net = tiny_anml()
  params = net.init(jax.random.key(0))
  x, y = _traj()
  ctx = net.context(params, x)
  base, _ = learner.make_sequential_learner(net, optax.sgd(0.1), ("pln",))(
      params, x, y, ctx)
  for kw in ({"remat": True}, {"unroll": 4}):
    other, _ = learner.make_sequential_learner(net, optax.sgd(0.1), ("pln",), **kw)(
        params, x, y, ctx)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 base, other)


@pytest.mark.parametrize("make,fast,static_ctx,first_order", [
    (tiny_anml, ("pln",), True, False),
    (tiny_anml, ("pln/head/kernel",), True, True),
    (tiny_anml, ("nm", "pln"), False, False),
    (tiny_oml, ("pln",), True, False),
])
def test_low_rank_head_equals_dense_sgd_with_its_meta_gradient(make, fast, static_ctx,
                                                               first_order, x64):
  """make_sgd_learner keeps the head's updates as factors; the adapted
  parameters, the losses and the gradient through the whole trajectory (what
  meta-training takes) equal the dense optax.sgd learner's (float64)."""
  net = make(num_outputs=9)
  params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(0)))
  x, y = _traj(t=5, k=9)
  x = x.astype(jnp.float64)
  x_rem = 0.05 * jax.random.normal(jax.random.key(2), (6, 28, 28, 1), jnp.float64)
  y_rem = jnp.arange(6)
  kw = {"first_order": first_order}
  dense = learner.make_sequential_learner(net, optax.sgd(0.4), fast, **kw)
  low = learner.make_sgd_learner(net, 0.4, fast, **kw)
  dense_off = learner.make_sgd_learner(net, 0.4, fast, low_rank_head=False, **kw)

  def run(learn, p):
    adapted, losses = learn(p, x, y, net.context(p, x) if static_ctx else None)
    return learner.cross_entropy(net.apply(adapted, x_rem), y_rem), (adapted, losses)

  grad = jax.value_and_grad(run, argnums=1, has_aux=True)
  (l_d, (a_d, s_d)), g_d = grad(dense, params)
  (l_l, (a_l, s_l)), g_l = grad(low, params)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_d))
  close = lambda a, b, s: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11 * s)
  close(l_l, l_d, 1.0)
  close(s_l, s_d, 1.0)
  jax.tree.map(lambda a, b: close(a, b, 1.0), a_l, a_d)
  jax.tree.map(lambda a, b: close(a, b, scale), g_l, g_d)
  moved = a_d["pln"]["head"]["kernel"] - params["pln"]["head"]["kernel"]
  assert float(jnp.max(jnp.abs(moved))) > 1e-3     # the head did learn
  off, _ = dense_off(params, x, y, net.context(params, x) if static_ctx else None)
  jax.tree.map(lambda a, b: close(a, b, 1.0), off, a_d)
