"""Closed-form streaming heads: each equals its batch form, ignores the order
of the stream, handles a class seen once, and plugs into the meta-test."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evaluate
from anml_jax import configs, continual, data, heads, learners
from tests.conftest import CONFIGS, tiny_anml

REG = {"prototype": None, "prototype_cosine": None, "ridge": 0.05, "gaussian": 0.3}


def _stream(n=5, per=4, d=9, seed=0, offset=3.0):
  """Features with a common offset (as non-negative network features have)
  and class-dependent means; labels in learning order, ``per`` per class."""
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(n, d)) * 2
  x = offset + means.repeat(per, 0) + rng.normal(size=(n * per, d))
  return x, np.repeat(np.arange(n), per)


def _batch(name, x, y, n, reg):
  """The batch (textbook) form of each head, in float64 numpy."""
  if name == "prototype_cosine":
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  mu = np.stack([x[y == c].mean(0) for c in range(n)])
  if name == "prototype":
    return 2 * mu.T, -np.sum(mu ** 2, 1)
  if name == "prototype_cosine":
    return (mu / np.linalg.norm(mu, axis=1, keepdims=True)).T, np.zeros(n)
  d = x.shape[1]
  if name == "ridge":
    xa = np.concatenate([x, np.ones((len(x), 1))], 1)
    lam = reg * np.sum(x ** 2) / d
    penalty = np.diag([lam] * d + [0.0])
    w = np.linalg.solve(xa.T @ xa + penalty, xa.T @ np.eye(n)[y])
    return w[:d], w[d]
  centred = x - mu[y]
  cov = centred.T @ centred / (len(x) - n)
  cov = (1 - reg) * cov + reg * np.trace(cov) / d * np.eye(d)
  z = np.linalg.solve(cov, mu.T)
  return z, -0.5 * np.sum(mu.T * z, 0)


@pytest.mark.parametrize("name", sorted(heads.HEADS))
def test_one_pass_equals_the_batch_form_in_float64(name, x64):
  x, y = _stream()
  w, b = heads.fit(heads.get(name), jnp.asarray(x), jnp.asarray(y), 5, REG[name])
  w_ref, b_ref = _batch(name, x, y, 5, REG[name])
  np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(heads.HEADS))
def test_order_and_block_size_do_not_change_the_head(name):
  """float32: a shuffled stream and blocks of 7 (with padding) give the
  logits of the one-image-at-a-time pass, up to rounding."""
  x, y = _stream(n=6, per=5, d=12, seed=1)
  head = heads.get(name)
  xq = jnp.asarray(_stream(n=6, per=2, d=12, seed=2)[0], jnp.float32)

  def logits(x, y, block):
    w, b = heads.fit(head, jnp.asarray(x, jnp.float32), jnp.asarray(y), 6,
                     REG[name], block)
    return heads.prepare(head, xq) @ w + b

  ref = logits(x, y, 1)
  # float32 rounding of sums over the stream, relative to the logits' scale
  # (the gaussian head subtracts the class means' part from a raw second
  # moment, which loses a few bits to the features' common offset)
  tol = 3e-5 * float(jnp.max(jnp.abs(ref)))
  perm = np.random.default_rng(3).permutation(len(y))
  np.testing.assert_allclose(logits(x[perm], y[perm], 1), ref, rtol=0, atol=tol)
  np.testing.assert_allclose(logits(x, y, 7), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("name", sorted(heads.HEADS))
def test_a_class_seen_once_is_learnt_and_an_unseen_class_never_predicted(name):
  # classes 0-2 seen once each, class 3 never: one image per class leaves the
  # gaussian head no within-class spread, so it falls back to isotropic
  x = np.eye(4, 8, dtype=np.float32)[:3] * 5 + 1
  w, b = heads.fit(heads.get(name), jnp.asarray(x), jnp.arange(3), 4, REG[name])
  assert np.all(np.isfinite(np.asarray(w)))
  assert np.isneginf(float(b[3])) and np.all(np.isfinite(np.asarray(b[:3])))
  logits = heads.prepare(heads.get(name), jnp.asarray(x)) @ w + b
  # the margin of the right class over the next one is far above rounding
  top2 = np.sort(np.asarray(logits), 1)[:, -2:]
  assert np.all(top2[:, 1] - top2[:, 0] > 1e-2)
  np.testing.assert_array_equal(np.argmax(np.asarray(logits), 1), [0, 1, 2])


def test_the_head_evaluator_scores_a_separable_stream_perfectly_and_searches_regs():
  """Classes whose features are far apart (no ties): every head learns every
  class; the evaluator reads one set of statistics out per regulariser."""
  rng = np.random.default_rng(0)
  c, d = 8, 16
  feats = (np.eye(c, d)[:, None] * 10 + 0.1 * rng.normal(size=(c, 20, d))).astype(np.float32)
  classes = jnp.asarray([[1, 4, 6], [0, 2, 7]])
  for name, head in heads.HEADS.items():
    regs = jnp.asarray(head.regs or (0.0,), jnp.float32)
    evaluate = heads.make_head_evaluator(head, train_per_class=15, block=4)
    res = jax.jit(evaluate)(regs, classes, jnp.asarray(feats))
    assert res.test.shape == res.train.shape == (2, len(regs))
    assert res.test_per_class.shape == (2, len(regs), 3)
    np.testing.assert_array_equal(res.test, 1.0)
    np.testing.assert_array_equal(res.train, 1.0)
  evaluate = heads.make_head_evaluator(heads.get("ridge"), train_per_class=15,
                                       train_scores=False)
  res = jax.jit(evaluate)(jnp.asarray([0.1]), classes, jnp.asarray(feats))
  assert np.all(np.isnan(res.train)) and np.all(res.test == 1.0)


@pytest.mark.parametrize("name", sorted(heads.HEADS))
def test_views_of_an_image_are_learnt_as_images_of_its_class(name, x64):
  """S images of V views each give the head of the S * V views as images of
  their own (the batch form), and one view gives the plain head."""
  x, y = _stream(n=5, per=12, d=9, seed=4)           # 60 rows: 20 images x 3 views
  views = x.reshape(5, 4, 3, 9).reshape(20, 3, 9)    # class-major, 3 views each
  labels = y.reshape(5, 4, 3)[:, :, 0].reshape(20)
  w, b = heads.fit(heads.get(name), jnp.asarray(views), jnp.asarray(labels), 5, REG[name],
                   block=3)
  w_ref, b_ref = _batch(name, x, y, 5, REG[name])
  np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-9)
  w1, b1 = heads.fit(heads.get(name), jnp.asarray(views[:, :1]), jnp.asarray(labels), 5,
                     REG[name])
  w2, b2 = heads.fit(heads.get(name), jnp.asarray(views[:, 0]), jnp.asarray(labels), 5,
                     REG[name])
  np.testing.assert_allclose(w1, w2, rtol=1e-12, atol=0)
  np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=0)


def test_the_evaluator_scores_an_image_by_its_views_mean():
  """Held-out drawings whose first view lies near the other class and whose
  other views lie on their own: scored by the views' mean, every one is
  right; by the first view alone, every one is wrong (margins far from
  ties)."""
  d, v = 4, 5
  feats = np.zeros((2, 20, v, d), np.float32)
  feats[0, :, :, 1] = feats[1, :, :, 0] = 10.0   # class 0 at 10 e_1, class 1 at 10 e_0
  feats[:, 15:, 0] = feats[::-1, 15:, 1]         # test drawings: first view on the other class
  feats += 0.01 * np.random.default_rng(0).normal(size=feats.shape).astype(np.float32)
  classes = jnp.asarray([[0, 1]])
  for head in heads.HEADS.values():
    regs = jnp.asarray(head.regs[:1] if head.regs else (0.0,), jnp.float32)
    evaluate = jax.jit(heads.make_head_evaluator(head, train_per_class=15, block=4))
    res = evaluate(regs, classes, jnp.asarray(feats))
    np.testing.assert_array_equal(res.test, 1.0)
    np.testing.assert_array_equal(res.train, 1.0)
    np.testing.assert_array_equal(evaluate(regs, classes, jnp.asarray(feats[:, :, 0])).test, 0.0)


def test_shifted_views_move_the_image_and_repeat_its_edge():
  img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
  down = np.asarray(data.shifted(img, 1, 0))[..., 0]
  np.testing.assert_array_equal(down[1:], img[:3, :, 0])
  np.testing.assert_array_equal(down[0], img[0, :, 0])        # the edge repeated
  left = np.asarray(data.shifted(img[None, None], 0, -1))[0, 0, ..., 0]
  np.testing.assert_array_equal(left[:, :3], img[:, 1:, 0])
  np.testing.assert_array_equal(left[:, 3], img[:, 3, 0])
  np.testing.assert_array_equal(np.asarray(data.shifted(img, 0, 0)), img)
  for views, shifts in data.VIEW_SHIFTS.items():
    assert len(set(shifts)) == views and shifts[0] == (0, 0)


@pytest.mark.parametrize("which", ["head_input", "context"])
def test_closed_form_features_hold_each_view_s_features_in_its_slot(which):
  """Views computed together, batched, equal each moved image set computed
  on its own (a tiny ANML, both feature kinds; float tolerance)."""
  net = tiny_anml()
  params = net.init(jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (3, 4, 28, 28, 1))
  compute = continual.compute_context if which == "context" else continual.compute_features
  got = learners.closed_form_features(net, params, images, which, views=9, batch=5)
  assert got.shape == (3, 4, 9) + compute(net, params, images).shape[2:]
  for k, (down, right) in enumerate(data.VIEW_SHIFTS[9]):
    want = compute(net, params, data.shifted(images, down, right))
    np.testing.assert_allclose(got[:, :, k], want, rtol=1e-4, atol=1e-5)
  assert float(jnp.abs(got[:, :, 1] - got[:, :, 0]).max()) > 1e-3   # the moves differ


@pytest.mark.parametrize("flag, message", [
    ("--eval_config.learner=lstsq", "learner='lstsq' is not a registered learner"),
    ("--eval_config.regs=(0.0,)", "regs=(0.0,) must list positive"),
    ("--eval_config.regs=(-1.0,)", "regs=(-1.0,) must list positive"),
    ("--eval_config.oracle", "its oracle is itself"),
    ("--eval_config.finetune=('nm','pln')", "learns only the classifier"),
    ("--eval_config.views=4", "views=4 must be one of 1, 5, 9"),
])
def test_bad_closed_form_protocols_fail_before_any_data_loads(flag, message, tmp_path, capsys):
  learner = [] if "learner=" in flag else ["--eval_config.learner=ridge"]
  out = str(tmp_path / "ev")
  rc = evaluate.main([f"--config={CONFIGS}/scratch.py:smoke", "--out", out,
                      f"--omniglot_dir={tmp_path / 'no_data'}", *learner, flag])
  err = capsys.readouterr().err
  assert rc == 1 and message in err and "Omniglot not found" not in err
  assert not os.path.exists(out)


def test_views_refused_for_the_adam_learner():
  c = configs.get_eval_config("smoke")
  c.views = 9
  with pytest.raises(ValueError, match="views applies to closed-form learners only"):
    configs.validate_eval(c)


def test_a_head_without_a_regulariser_refuses_one():
  c = configs.get_eval_config("smoke")
  c.learner, c.regs = "prototype", (0.1,)
  with pytest.raises(ValueError, match="has no regulariser"):
    configs.validate_eval(c)


def test_evaluate_py_with_a_closed_form_head(tmp_path):
  out = str(tmp_path / "ridge")
  assert evaluate.main([f"--config={CONFIGS}/scratch.py:smoke", "--out", out,
                        f"--eval_config={CONFIGS}/eval.py:smoke", "--data_source=synthetic",
                        "--eval_config.learner=gaussian", "--eval_config.features=context",
                        "--eval_config.regs=(0.1,0.5)"]) == 0
  r = json.load(open(os.path.join(out, "results.json")))
  assert r["finetune"] == ["pln/head"] and r["protocol"]["learner"] == "gaussian"
  assert [row["classes"] for row in r["per_n"]] == [3, 5]
  assert all(row["hyper"] in (0.1, 0.5) and sum(row["hyper_votes"]) == 2 for row in r["per_n"])
  assert "gaussian head on the context" in open(os.path.join(out, "table.md")).read()
