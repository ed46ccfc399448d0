import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anml_jax import configs, continual, data, evaluation, learner, learners, methods, models
from anml_jax.models import reinit_head
from tests.conftest import CONFIGS, coded_images, tiny_anml, tiny_oml, toy_net

EVAL_SMOKE = f"--eval_config={CONFIGS}/eval.py:smoke"

K = 6  # outputs of the toy network


def _evaluate(net, params, lrs, classes, images, reset=True, finetune=("pln",),
              iid=False, ctx=None):
  ev = jax.jit(continual.make_stream_evaluator(
      net, finetune_params=finetune, train_per_class=15, reset_head=reset, eval_batch=7,
      iid=iid))
  keys = jax.random.split(jax.random.key(0), classes.shape[0])
  return ev(params, keys, jnp.asarray(lrs), jnp.asarray(classes), images, ctx)


def test_a_perfect_memoriser_scores_one_and_a_random_head_scores_chance():
  net = toy_net(K)
  images = coded_images(K)
  perfect = {"pln": {"head": {"kernel": 10 * jnp.eye(K), "bias": jnp.zeros(K)}}}
  res = _evaluate(net, perfect, [0.0], np.array([[0, 2, 5]]), images, reset=False)
  assert float(res.train[0, 0]) == 1.0 and float(res.test[0, 0]) == 1.0
  np.testing.assert_array_equal(res.test_per_class[0, 0], [1, 1, 1])
  # A random head that is never trained (lr 0) over all 6 classes: on average
  # 1/6 correct; over 200 random heads the mean is near chance.
  classes = np.tile(np.arange(K), (200, 1))
  res = _evaluate(net, net.init(jax.random.key(1)), [0.0], classes, images)
  assert abs(float(res.test.mean()) - 1 / K) < 0.05


def _learn(net, finetune, params, lr, x, y, ctx):
  """The meta-test's learner: one pass of Adam(lr) over (x, y)."""
  return learner.make_sequential_learner(net, optax.adam(lr), finetune)(
      params, x, y, ctx)[0]


@functools.lru_cache(maxsize=None)
def _adam_step(net, finetune):
  """One jitted Adam step on one image, the lr an input: compiled once per
  network and ``finetune`` however many lrs and runs the loop below takes."""

  @jax.jit
  def step(fast, slow, state, lr, xi, yi):
    loss = lambda f: learner.cross_entropy(
        net.apply(learner.merge(f, slow), xi[None]), yi[None])
    u, state = optax.adam(lr).update(jax.grad(loss)(fast), state, fast)
    return optax.apply_updates(fast, u), state

  return step


def _adam_loop(net, params, finetune, lr, x, y):
  """The reference: a Python loop of Adam steps, batch 1, on the parameters
  under ``finetune`` (whole top-level groups or the head); no scan or vmap."""
  fast, slow = learner.partition(params, finetune)
  step, state = _adam_step(net, tuple(finetune)), optax.adam(lr).init(fast)
  for xi, yi in zip(x, y):
    fast, state = step(fast, slow, state, lr, xi, yi)
  return learner.merge(fast, slow)


@pytest.mark.parametrize("finetune", [("pln",), ("pln/head",)])
def test_scan_learner_vmapped_over_lrs_equals_a_python_loop(finetune, x64):
  """Float64: in float32, Adam turns the rounding noise of gradients that are
  zero in exact arithmetic (a conv bias before a norm, scale-invariant
  directions) into +-lr steps, so two exact-equal float32 paths drift apart
  by up to lr per step; in float64 that noise is far below Adam's eps."""
  net = tiny_anml(num_outputs=9)
  f64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
  params = f64(reinit_head(net.init(jax.random.key(0)), net.head_path,
                           jax.random.key(5)))
  images = f64(0.05 * jax.random.normal(jax.random.key(1), (9, 20, 28, 28, 1)))
  cls = jnp.array([1, 4, 7])
  x, y = images[cls, :15].reshape(45, 28, 28, 1), jnp.repeat(cls, 15)
  lrs = jnp.array([1e-3, 3e-2])
  ctx = net.context(params, x) if finetune == ("pln/head",) else None
  scanned = jax.jit(jax.vmap(lambda lr: _learn(net, finetune, params, lr, x, y, ctx)))(
      lrs)
  for l, lr in enumerate(lrs):
    ref = _adam_loop(net, params, finetune, lr, x, y)
    got = jax.tree.map(lambda a: a[l], scanned)
    assert jax.tree.leaves(got)[0].dtype == jnp.float64
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(ref)):
      name = jax.tree_util.keystr(path)
      if "['conv" in name and name.endswith("['bias']"):
        # before an instance norm: exact gradient 0, so both stay at ~0
        # (Adam moves them by noise / (noise + eps) * lr steps)
        assert float(jnp.abs(a).max()) < 1e-5 and float(jnp.abs(b).max()) < 1e-5
        continue
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
    all_images = images.reshape(-1, 28, 28, 1)
    np.testing.assert_allclose(net.apply(got, all_images), net.apply(ref, all_images),
                               rtol=1e-6, atol=1e-7)


def _margins(logits):
  """(S, K) -> (S,) top-1 minus top-2 logit."""
  top = jnp.sort(logits, axis=-1)
  return top[:, -1] - top[:, -2]


@pytest.mark.parametrize("iid", [False, True])
def test_scan_vmap_evaluation_equals_a_python_loop(iid):
  """Accuracies of the jitted evaluator (scan, vmap over runs and lrs, iid
  order) equal those of a Python loop. Exact comparison of predictions is
  sound here: the toy network's logits are far from ties (checked)."""
  net = toy_net(K)
  params = net.init(jax.random.key(0))
  images = coded_images(K)
  classes = np.array([[1, 4, 5], [0, 2, 3]])
  lrs = [3e-2, 3e-1]
  res = _evaluate(net, params, lrs, classes, images, finetune=("pln/head",), iid=iid)
  keys = jax.random.split(jax.random.key(0), 2)
  for r in range(2):
    p0 = reinit_head(params, net.head_path, keys[r])
    x_tr, y_tr, x_te, y_te = continual.split_drawings(images, jnp.asarray(classes[r]), 15)
    order = np.arange(45)
    if iid:
      order = np.asarray(jax.random.permutation(jax.random.fold_in(keys[r], 1), 45))
      assert not np.array_equal(order, np.arange(45))
    for l, lr in enumerate(lrs):
      p = _adam_loop(net, p0, ("pln/head",), lr, x_tr[order], y_tr[order])
      for x, y, acc in ((x_tr, y_tr, res.train), (x_te, y_te, res.test)):
        logits = net.apply(p, x)
        assert float(_margins(logits).min()) > 1e-3
        assert float(acc[r, l]) == float(jnp.mean(jnp.argmax(logits, -1) == y))


def test_head_only_on_precomputed_features_equals_the_whole_network():
  """The fast meta-test path: learning the head on features computed once
  gives the head (and logits) of learning it through the whole network."""
  net = tiny_anml(num_outputs=9)
  params = reinit_head(net.init(jax.random.key(0)), net.head_path, jax.random.key(5))
  images = 0.05 * jax.random.normal(jax.random.key(1), (9, 20, 28, 28, 1))
  feats = continual.compute_features(net, params, images, batch=16)
  assert feats.shape == (9, 20, 27)
  x = images[:3, :15].reshape(45, 28, 28, 1)
  y = jnp.repeat(jnp.arange(3), 15)
  whole = _learn(net, ("pln/head",), params, 1e-2, x, y, net.context(params, x))
  head = models.head_only(net)
  fast = _learn(head, ("pln/head",), models.head_params(params, net.head_path), 1e-2,
                feats[:3, :15].reshape(45, -1), y, None)
  assert set(fast) == {"pln"} and set(fast["pln"]) == {"head"}
  for k in ("kernel", "bias"):
    np.testing.assert_allclose(fast["pln"]["head"][k], whole["pln"]["head"][k],
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(head.apply(fast, feats[:3].reshape(60, -1)),
                             net.apply(whole, images[:3].reshape(60, 28, 28, 1)),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["anml", "oml", "scratch"])
def test_meta_test_moves_exactly_the_parameters_the_method_fine_tunes(method):
  net = tiny_oml(num_outputs=5) if method == "oml" else tiny_anml(num_outputs=5)
  params = net.init(jax.random.key(0))
  x = 0.1 * jax.random.normal(jax.random.key(1), (6, 28, 28, 1))
  new = _learn(net, methods.get(method).finetune, params, 1e-2, x, jnp.arange(6) % 5,
               None)
  flat_old = dict(jax.tree_util.tree_leaves_with_path(params))
  moved = {jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(new)
           if not np.array_equal(v, flat_old[k])}
  # every leaf under the fine-tuned groups moves, none outside them
  paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
  prefixes = ["".join(f"['{part}']" for part in g.split("/"))
              for g in methods.get(method).finetune]
  inside = {k for k in paths if any(k.startswith(p) for p in prefixes)}
  assert moved == inside and inside
  if method == "anml":     # ANML re-learns its classifier alone
    assert moved == {"['pln']['head']['bias']", "['pln']['head']['kernel']"}


def _smoke_protocol():
  """A tiny ANML, its parameters, synthetic Omniglot (30 + 20 classes) and the
  smoke meta-test protocol sized to it."""
  net = tiny_anml(num_outputs=40)
  omni = data.synthetic(0, background=30, evaluation=20)
  ecfg = configs.get_eval_config("smoke")
  ecfg.search_pool, ecfg.class_pool = 30, 20
  return net, net.init(jax.random.key(0)), omni, ecfg


def test_held_out_test_images_never_influence_training_or_lr_choice():
  net, params, omni, ecfg = _smoke_protocol()
  clean = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  ev = omni.evaluation.copy()
  ev[:, 15:] = np.nan                       # poison every held-out drawing
  poisoned = evaluation.meta_test("anml", net, params, omni._replace(evaluation=ev),
                                  ecfg, log=lambda s: None)
  for a, b in zip(clean["per_n"], poisoned["per_n"]):
    assert a["hyper"] == b["hyper"] and a["hyper_votes"] == b["hyper_votes"]
    assert a["train_runs"] == b["train_runs"]


def toy_protocol():
  """The toy network (exact logits), coded Omniglot (30 + 20 classes) and the
  smoke meta-test protocol sized to it: results of two code paths can be
  compared exactly."""
  net = toy_net(30)
  coded = np.asarray(coded_images(30))
  omni = data.ClassSplit(coded, coded[:20], [], [])
  ecfg = configs.get_eval_config("smoke")
  ecfg.search_pool, ecfg.class_pool = 30, 20
  ecfg.lrs = (3e-2, 3e-1)
  return net, net.init(jax.random.key(0)), omni, ecfg


@pytest.mark.parametrize("oracle", [False, True])
def test_the_memory_bound_on_predictions_changes_no_result(oracle):
  net, params, omni, ecfg = toy_protocol()
  ecfg.eval_images = 4096                  # one prediction batch per stream
  ecfg.oracle = oracle
  wide = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  ecfg.eval_images = 1                     # one image at a time
  narrow = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  assert wide["oracle"] == oracle
  for a, b in zip(wide["per_n"], narrow["per_n"]):
    assert a["hyper"] == b["hyper"] and a["hyper_votes"] == b["hyper_votes"]
    assert a["train_runs"] == b["train_runs"] and a["test_runs"] == b["test_runs"]
    assert a["search_test_mean_per_hyper"] == b["search_test_mean_per_hyper"]


def test_stream_eval_batch_bounds_the_images_in_flight_per_device():
  assert learners.stream_eval_batch(2048, runs=10, lrs=14) == 14      # 140 streams
  assert learners.stream_eval_batch(2048, runs=10, lrs=1) == 204
  assert learners.stream_eval_batch(2048, runs=10, lrs=14, devices=4) == 48  # 3 runs each
  assert learners.stream_eval_batch(10, runs=10, lrs=14) == 1


def test_choose_lr_follows_the_original_vote_rule():
  lrs = (1e-3, 3e-4, 1e-4)
  scores = np.array([[0.5, 0.7, 0.7], [0.9, 0.1, 0.1], [0.2, 0.3, 0.1], [0.6, 0.6, 0.6]])
  lr, votes = continual.choose_lr(lrs, scores)
  assert votes == [2, 2, 0] and lr == 3e-4


def test_split_drawings_keeps_first_15_for_training():
  imgs = jnp.arange(4 * 20).reshape(4, 20)
  x_tr, y_tr, x_te, y_te = continual.split_drawings(imgs, jnp.array([3, 1]), 15)
  assert x_tr.tolist() == list(range(60, 75)) + list(range(20, 35))
  assert x_te.tolist() == list(range(75, 80)) + list(range(35, 40))
  assert y_tr.tolist() == [3] * 15 + [1] * 15


def test_random_split_is_the_drawer_split_of_the_drawings_reordered():
  """``split='random'`` learns and holds out the drawings a seeded per-class
  permutation puts first and last; the same protocol on images reordered by
  hand gives the same record."""
  net, params, omni, ecfg = toy_protocol()
  ecfg.split, ecfg.split_seed = "random", 3
  got = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  by_hand = omni._replace(
      background=data.order_drawings(omni.background[:ecfg.search_pool], "random", (3, 0)),
      evaluation=data.order_drawings(omni.evaluation[:ecfg.class_pool], "random", (3, 1)))
  ecfg.split = "drawer"
  want = evaluation.meta_test("anml", net, params, by_hand, ecfg, log=lambda s: None)
  assert got["protocol"]["split"] == "random" and want["protocol"]["split"] == "drawer"
  for a, b in zip(got["per_n"], want["per_n"]):
    assert a["hyper"] == b["hyper"] and a["hyper_votes"] == b["hyper_votes"]
    np.testing.assert_allclose(a["test_runs"], b["test_runs"], rtol=1e-6)
    np.testing.assert_allclose(a["train_runs"], b["train_runs"], rtol=1e-6)


def test_order_drawings_permutes_each_class_by_its_seed():
  x = np.arange(4 * 20).reshape(4, 20, 1, 1, 1)
  assert data.order_drawings(x, "drawer") is x
  a = data.order_drawings(x, "random", (0, 1))
  np.testing.assert_array_equal(np.sort(a, axis=1), x)             # a permutation per class
  assert not np.array_equal(a, x)
  np.testing.assert_array_equal(a, data.order_drawings(x, "random", (0, 1)))
  assert not np.array_equal(a, data.order_drawings(x, "random", (1, 1)))
  with pytest.raises(ValueError, match="split='disk'"):
    data.order_drawings(x, "disk")
  ecfg = configs.get_eval_config("smoke")
  ecfg.split = "disk"
  with pytest.raises(ValueError, match="split='disk' must be one of drawer, random"):
    configs.validate_eval(ecfg)
