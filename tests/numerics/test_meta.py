import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.test_util import check_grads

from anml_jax import configs, data, learner, meta, methods, steps
from tests.conftest import coded_images, tiny_anml, toy_net


def _cfg(**kw):
  c = configs.get_config("smoke")
  c.update(kw)
  return c


def _task(key, t=3, r=4, k=7, dtype=jnp.float32):
  imgs = 0.05 * jax.random.normal(key, (k, 20, 28, 28, 1), dtype)
  tasks = data.sample_tasks(key, imgs, meta_batch=1, traj_len=t, remember_size=r)
  return jax.tree.map(lambda a: a[0], tasks)


def test_meta_gradient_matches_finite_differences_float64(x64):
  net = tiny_anml()
  params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(0)))
  task = _task(jax.random.key(1), dtype=jnp.float64)
  loss = meta.make_meta_loss(_cfg(inner_lr=0.5), net)
  f = jax.jit(lambda p: loss(p, task)[0])
  # A small step keeps the central difference off ReLU / max-pool kinks.
  check_grads(f, (params,), order=1, modes=("rev",), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_inner_optimizer_config_picks_the_inner_loop_transform(x64):
  """inner_optimizer='adam': the meta-loss is the remember-set loss after a
  Python loop of Adam steps on the PLN, one trajectory image each."""
  net = tiny_anml()
  params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(0)))
  task = _task(jax.random.key(1), dtype=jnp.float64)
  got = meta.make_meta_loss(_cfg(inner_optimizer="adam", inner_lr=0.01), net)(
      params, task)[0]
  opt, pln = optax.adam(0.01), params["pln"]
  st = opt.init(pln)

  @jax.jit                    # one compile, not one per eager op
  def adam_step(pln, st, xi, yi):
    g = jax.grad(lambda q: learner.cross_entropy(
        net.apply({**params, "pln": q}, xi[None]), yi[None]))(pln)
    u, st = opt.update(g, st, pln)
    return optax.apply_updates(pln, u), st

  for xi, yi in zip(task.x_traj, task.y_traj):
    pln, st = adam_step(pln, st, xi, yi)
  want = learner.cross_entropy(net.apply({**params, "pln": pln}, task.x_rem), task.y_rem)
  np.testing.assert_allclose(got, want, rtol=1e-10)
  sgd = meta.make_meta_loss(_cfg(inner_lr=0.01), net)(params, task)[0]
  assert abs(float(sgd - got)) > 1e-6


def test_first_order_drops_exactly_the_second_order_terms(x64):
  net = tiny_anml()
  params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(0)))
  task = _task(jax.random.key(1), dtype=jnp.float64)
  g2 = jax.grad(lambda p: meta.make_meta_loss(_cfg(inner_lr=0.5), net)(p, task)[0])(params)
  g1 = jax.grad(lambda p: meta.make_meta_loss(
      _cfg(inner_lr=0.5, first_order=True), net)(p, task)[0])(params)

  # Independent first-order reference: the inner displacement is a constant.
  inner = learner.make_sequential_learner(net, optax.sgd(0.5), ("pln",))
  adapted, _ = inner(params, task.x_traj, task.y_traj,
                     net.context(params, task.x_traj))
  delta = jax.tree.map(lambda a, b: a - b, adapted["pln"], params["pln"])

  def ref(p):
    q = {**p, "pln": jax.tree.map(lambda a, d: a + d, p["pln"], delta)}
    return learner.cross_entropy(net.apply(q, task.x_rem), task.y_rem)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10),
               g1, jax.grad(ref)(params))
  diff = max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(g1["nm"]), jax.tree.leaves(g2["nm"])))
  assert diff > 1e-6, "second-order terms should change the NM meta-gradient"


def test_nm_receives_nonzero_meta_gradient_and_step_changes_it():
  cfg = _cfg(num_train_classes=7, model=dict(configs.get_config("smoke").model))
  net = tiny_anml()
  state = meta.init_state(cfg, net)
  imgs = 0.05 * jax.random.normal(jax.random.key(2), (7, 20, 28, 28, 1))
  new, m = jax.jit(steps.make_meta_train_step(cfg, net))(state, imgs)
  assert float(m["nm_grad_norm"]) > 0
  changed = [not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(new.params["nm"]), jax.tree.leaves(state.params["nm"]))]
  assert all(changed)
  assert int(new.step) == 1


def test_meta_step_does_not_retrace():
  cfg = _cfg(num_train_classes=7)
  net = tiny_anml()
  step = jax.jit(chex.assert_max_traces(steps.make_meta_train_step(cfg, net), n=1))
  state = meta.init_state(cfg, net)
  imgs = 0.05 * jax.random.normal(jax.random.key(2), (7, 20, 28, 28, 1))
  for _ in range(3):
    state, _ = step(state, imgs)
  assert int(state.step) == 3


def test_meta_batch_vmaps_distinct_classes_and_is_deterministic():
  cfg = _cfg(num_train_classes=7, meta_batch=3)
  net = tiny_anml()
  imgs = 0.05 * jax.random.normal(jax.random.key(2), (7, 20, 28, 28, 1))
  step = jax.jit(steps.make_meta_train_step(cfg, net))
  a, ma = step(meta.init_state(cfg, net), imgs)
  b, mb = step(meta.init_state(cfg, net), imgs)
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  assert float(ma["loss"]) == float(mb["loss"])


def test_pretrain_step_runs_and_lowers_loss_on_a_fixed_batch_problem():
  cfg = configs.get_config("smoke", "pretrain")
  cfg.num_train_classes = 5
  net = tiny_anml(num_outputs=5)
  imgs = jnp.repeat(jax.random.normal(jax.random.key(0), (5, 1, 28, 28, 1)), 20, axis=1)
  chunk = jax.jit(meta.make_train_chunk(methods.get("pretrain").make_step(cfg, net), 60))
  state, m = chunk(meta.init_state(cfg, net), imgs)
  assert float(m["loss"][-10:].mean()) < float(m["loss"][:10].mean())


def test_pretraining_never_sees_the_held_out_drawings_and_scores_them():
  cfg = configs.get_config("smoke", "pretrain")
  cfg.update(num_train_classes=5, holdout_drawings=5, pretrain_batch=16)
  net = tiny_anml(num_outputs=5)
  imgs = np.array(jax.random.normal(jax.random.key(0), (5, 20, 28, 28, 1)))
  imgs[:, 15:] = np.nan                      # poison every held-out drawing
  chunk = jax.jit(meta.make_train_chunk(methods.get("pretrain").make_step(cfg, net), 20))
  state, m = chunk(meta.init_state(cfg, net), jnp.asarray(imgs))
  assert np.isfinite(np.asarray(m["loss"])).all()
  assert all(np.isfinite(a).all() for a in jax.tree.leaves(state.params))


def test_holdout_accuracy_counts_the_last_drawings_of_every_class():
  """On the toy network (exact logits): a head that names every class right
  but class 2 (as 3) scores 5/6 on the held-out drawings."""
  cfg = configs.get_config("smoke", "pretrain")
  cfg.holdout_drawings = 5
  net = toy_net(6)
  kernel = 10 * jnp.eye(6)
  kernel = kernel.at[2].set(10 * jax.nn.one_hot(3, 6))
  params = {"pln": {"head": {"kernel": kernel, "bias": jnp.zeros(6)}}}
  acc = jax.jit(meta.make_holdout_accuracy(cfg, net, batch=7))(params, coded_images(6))
  assert abs(float(acc) - 25 / 30) < 1e-6      # 25 of 30 images; steps are 1/30
