import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import evaluate
import train
from anml_jax import configs, continual, data, evaluation, inner_loop
from anml_jax.models import Network
from tests.conftest import tiny_anml, tiny_oml

K = 6  # outputs of the toy network


def _toy_net():
  """Context = the first K pixels (a class code); logits = ctx @ W + b."""
  def context(params, x):
    del params
    return x.reshape(x.shape[0], -1)[:, :K]

  def predict(params, x, ctx):
    del x
    return ctx @ params["pln"]["head"]["kernel"] + params["pln"]["head"]["bias"]

  init = lambda key: {"pln": {"head": {
      "kernel": jax.random.normal(key, (K, K)), "bias": jnp.zeros(K)}}}
  return Network("toy", init, context, predict, (), ("pln", "head"))


def _coded_images(num_classes):
  """(C, 20, 28, 28, 1): class c has pixel c set (plus per-drawing noise after)."""
  x = np.zeros((num_classes, 20, 28, 28, 1), np.float32)
  for c in range(num_classes):
    x[c, :, 0, c, 0] = 1.0
  x[:, :, 5:, :, :] = np.random.default_rng(0).normal(size=(num_classes, 20, 23, 28, 1))
  return jnp.asarray(x)


def _evaluate(net, params, lrs, classes, images, reset=True, finetune=("pln",)):
  ev = jax.jit(continual.make_stream_evaluator(
      net, finetune_params=finetune, reset_head=reset, eval_batch=7))
  keys = jax.random.split(jax.random.key(0), classes.shape[0])
  return ev(params, keys, jnp.asarray(lrs), jnp.asarray(classes), images, None)


def test_a_perfect_memoriser_scores_one_and_a_random_head_scores_chance():
  net = _toy_net()
  images = _coded_images(K)
  perfect = {"pln": {"head": {"kernel": 10 * jnp.eye(K), "bias": jnp.zeros(K)}}}
  res = _evaluate(net, perfect, [0.0], np.array([[0, 2, 5]]), images, reset=False)
  assert float(res.train[0, 0]) == 1.0 and float(res.test[0, 0]) == 1.0
  np.testing.assert_array_equal(res.test_per_class[0, 0], [1, 1, 1])
  # A random head that is never trained (lr 0) over all 6 classes: on average
  # 1/6 correct; over 200 random heads the mean is near chance.
  classes = np.tile(np.arange(K), (200, 1))
  res = _evaluate(net, net.init(jax.random.key(1)), [0.0], classes, images)
  assert abs(float(res.test.mean()) - 1 / K) < 0.05


def test_scan_vmap_evaluation_equals_a_python_loop():
  net = tiny_anml(num_outputs=9)
  params = net.init(jax.random.key(0))
  images = 0.05 * jax.random.normal(jax.random.key(1), (9, 20, 28, 28, 1))
  classes = np.array([[1, 4, 7], [0, 2, 8]])
  lrs = [1e-3, 3e-2]
  res = _evaluate(net, params, lrs, classes, images)
  keys = jax.random.split(jax.random.key(0), 2)
  from anml_jax.models import reinit_head
  for r in range(2):
    for l, lr in enumerate(lrs):
      p = reinit_head(params, net.head_path, keys[r])
      opt = optax.adam(lr)
      st = opt.init(p["pln"])
      for c in classes[r]:
        for d in range(15):
          def loss(pln):
            return inner_loop.cross_entropy(
                net.apply({**p, "pln": pln}, images[c, d][None]), jnp.array([c]))
          g = jax.grad(loss)(p["pln"])
          u, st = opt.update(g, st, p["pln"])
          p = {**p, "pln": optax.apply_updates(p["pln"], u)}
      tr = np.mean([int(jnp.argmax(net.apply(p, images[c, d][None]))) == c
                    for c in classes[r] for d in range(15)])
      te = np.mean([int(jnp.argmax(net.apply(p, images[c, d][None]))) == c
                    for c in classes[r] for d in range(15, 20)])
      np.testing.assert_allclose(res.train[r, l], tr, atol=1e-6)
      np.testing.assert_allclose(res.test[r, l], te, atol=1e-6)


@pytest.mark.parametrize("method", ["anml", "oml", "scratch"])
def test_meta_test_moves_exactly_the_parameters_the_method_fine_tunes(method):
  net = tiny_oml(num_outputs=5) if method == "oml" else tiny_anml(num_outputs=5)
  params = net.init(jax.random.key(0))
  x = 0.1 * jax.random.normal(jax.random.key(1), (6, 28, 28, 1))
  learn = continual.make_stream_learner(net, evaluation.FINETUNE[method])
  new = learn(params, 1e-2, x, jnp.arange(6) % 5, None)
  flat_old = dict(jax.tree_util.tree_leaves_with_path(params))
  moved = {jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(new)
           if not np.array_equal(v, flat_old[k])}
  # every leaf under the fine-tuned groups moves, none outside them
  paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
  prefixes = ["".join(f"['{part}']" for part in g.split("/"))
              for g in evaluation.FINETUNE[method]]
  inside = {k for k in paths if any(k.startswith(p) for p in prefixes)}
  assert moved == inside and inside
  if method == "anml":     # ANML re-learns its classifier alone
    assert moved == {"['pln']['head']['bias']", "['pln']['head']['kernel']"}


def _smoke_protocol():
  """A tiny ANML, its parameters, synthetic Omniglot (30 + 20 classes) and the
  smoke meta-test protocol sized to it."""
  net = tiny_anml(num_outputs=40)
  omni = data.synthetic_omniglot(0, background=30, evaluation=20)
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
    assert a["lr"] == b["lr"] and a["lr_votes"] == b["lr_votes"]
    assert a["train_runs"] == b["train_runs"]


def test_the_memory_bound_on_predictions_changes_no_result():
  net, params, omni, ecfg = _smoke_protocol()
  ecfg.eval_images = 4096                  # one prediction batch per stream
  wide = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  ecfg.eval_images = 1                     # one image at a time
  narrow = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  for a, b in zip(wide["per_n"], narrow["per_n"]):
    assert a["lr"] == b["lr"]
    np.testing.assert_allclose(a["train_runs"], b["train_runs"], atol=1e-6)
    np.testing.assert_allclose(a["test_runs"], b["test_runs"], atol=1e-6)
    np.testing.assert_allclose(a["search_test_mean_per_lr"],
                               b["search_test_mean_per_lr"], atol=1e-6)


def test_stream_eval_batch_bounds_the_images_in_flight_per_device():
  assert evaluation.stream_eval_batch(2048, runs=10, lrs=14) == 14      # 140 streams
  assert evaluation.stream_eval_batch(2048, runs=10, lrs=1) == 204
  assert evaluation.stream_eval_batch(2048, runs=10, lrs=14, devices=4) == 48  # 3 runs each
  assert evaluation.stream_eval_batch(10, runs=10, lrs=14) == 1


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


def test_evaluate_py_smoke_writes_all_outputs(tmp_path):
  run = str(tmp_path / "run")
  assert train.main(["--workdir", run, "--config", "smoke", "--data-source",
                     "synthetic", "--no-progress", "--set", "num_train_classes=30"]) == 0
  out = str(tmp_path / "ev")
  assert evaluate.main(["--checkpoint", run, "--out", out, "--eval-config", "smoke",
                        "--data-source", "synthetic"]) == 0
  for f in ("results.json", "results.csv", "table.md", "accuracy_vs_classes.png",
            "forgetting.png"):
    assert os.path.getsize(os.path.join(out, f)) > 0
  r = json.load(open(os.path.join(out, "results.json")))
  assert [row["classes"] for row in r["per_n"]] == [3, 5]
  assert len(r["per_n"][0]["test_runs"]) == 2
  assert r["finetune"] == ["pln/head"]          # ANML re-learns its classifier
  step = r["checkpoint_step"]
  assert step > 0 and f"| anml {step} steps [pln/head] | 3 |" in open(
      os.path.join(out, "table.md")).read()
  assert len(r["forgetting"]["test_per_class_mean"]) == 5
  assert evaluate.main(["--checkpoint", run, "--method", "oml", "--out", out,
                        "--eval-config", "smoke", "--data-source", "synthetic"]) == 1
  assert evaluate.main(["--compare", out, out, "--out", str(tmp_path / "cmp")]) == 0
  # the same checkpoint evaluated for N=3,5 and then N=7: --merge joins them
  more = str(tmp_path / "ev7")
  assert evaluate.main(["--checkpoint", run, "--out", more, "--eval-config", "smoke",
                        "--schedule", "7", "--data-source", "synthetic"]) == 0
  merged = str(tmp_path / "merged")
  assert evaluate.main(["--merge", more, out, "--out", merged]) == 0
  m = json.load(open(os.path.join(merged, "results.json")))
  assert [row["classes"] for row in m["per_n"]] == [3, 5, 7]
  assert m["protocol"]["schedule"] == [3, 5, 7]
  assert len(m["forgetting"]["test_per_class_mean"]) == 7
  assert evaluate.main(["--merge", out, out, "--out", merged]) == 1      # N twice
  other = str(tmp_path / "ev_lr")
  assert evaluate.main(["--checkpoint", run, "--out", other, "--eval-config", "smoke",
                        "--schedule", "7", "--lrs", "0.01",
                        "--data-source", "synthetic"]) == 0
  assert evaluate.main(["--merge", other, out, "--out", merged]) == 1    # protocols differ
