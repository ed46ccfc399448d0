"""The training step built from parts: each part, the registry, and a method
registered from outside the package."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import train
from anml_jax import configs, data, meta, methods, models, steps, training
from anml_jax.learner import cross_entropy
from tests.conftest import smoke_args, toy_net


def _head_params(d, k):
  return {"pln": {"head": {"kernel": jnp.zeros((d, k)), "bias": jnp.arange(k, dtype=jnp.float32)}}}


@pytest.mark.parametrize("scale, rows_together", [("row", 1), ("block", 1)])
def test_zap_trajectory_redraws_only_the_trajectory_rows(scale, rows_together):
  cfg = configs.get_config("smoke", "anml")
  cfg.zap_scale = scale
  reset = steps.zap_trajectory(cfg, toy_net(3))
  batch = data.TaskBatch(None, jnp.full((rows_together, 5), 4), None, None)
  out = reset(_head_params(800, 9), jax.random.key(0), 0, batch, None)["pln"]["head"]
  k = np.asarray(out["kernel"])
  assert np.all(k[:, [0, 1, 2, 3, 5, 6, 7, 8]] == 0)
  np.testing.assert_allclose(k[:, 4].std(), np.sqrt(2 / 800), rtol=0.1)
  np.testing.assert_array_equal(out["bias"], np.arange(9))     # bias kept


@pytest.mark.parametrize("scale, std", [("row", np.sqrt(2 / 400)),
                                        ("block", np.sqrt(2 / (400 * 300)))])
def test_zap_epoch_redraws_every_row_at_each_epoch_start_only(scale, std):
  cfg = configs.get_config("smoke", "pretrain")
  cfg.update(zap="epoch", zap_scale=scale, pretrain_batch=8, holdout_drawings=4)
  images = jnp.zeros((5, 20, 1, 1, 1))
  assert steps.epoch_steps(cfg, images.shape) == 10          # ceil(5 * 16 / 8)
  reset = jax.jit(steps.zap_epoch(cfg, toy_net(3)))
  p = _head_params(400, 300)
  for step in (0, 9, 11, 25):
    same = reset(p, jax.random.key(1), step, None, images)
    np.testing.assert_array_equal(same["pln"]["head"]["kernel"], 0)
  for step in (10, 20):
    k = np.asarray(reset(p, jax.random.key(1), step, None, images)["pln"]["head"]["kernel"])
    assert np.all(k != 0)
    np.testing.assert_allclose(k.std(), std, rtol=0.02)


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


def _lr_halving_estimator(cfg, net):
  """An estimator defined outside the package: the plain loss's gradient,
  halved."""
  plain = steps.direct(cfg, net)

  def estimate(params, batch):
    at, grads, loss, aux = plain(params, batch)
    return at, jax.tree.map(lambda g: g / 2, grads), loss, aux

  return estimate


def test_a_method_registered_from_outside_trains(tmp_path):
  entry = methods.register(methods.Method(
      name="outside_halved", arch="anml", finetune=("pln/head",),
      sampler=steps.iid_batches, estimator=_lr_halving_estimator,
      batch_key="pretrain_batch", zaps=("none", "epoch"),
      optimizer=lambda cfg: optax.sgd(cfg.meta_lr),
      config={"zap": "epoch", "meta_lr": 3e-4},
      description="a test method: i.i.d. batches, halved gradients, epoch zaps, SGD"))
  try:
    cfg = configs.get_config("smoke", "outside_halved")
    cfg.update(num_train_classes=8, steps=24, log_every=8, ckpt_every=8)   # zaps at 20
    cfg.model.update(num_outputs=8)
    assert cfg.zap == "epoch" and cfg.meta_lr == 3e-4
    images = data.synthetic(0, background=8, evaluation=1).background
    state = training.train(cfg, str(tmp_path / "w"), images, progress=False)
    assert meta.steps_taken(state) == 24 and entry.trained
    lines = [json.loads(l) for l in open(tmp_path / "w" / "metrics.jsonl")]
    assert [l["step"] for l in lines] == [8, 16, 24]
    assert all(np.isfinite(l["loss"]) for l in lines)
    saved = json.load(open(tmp_path / "w" / "config.json"))
    assert saved["method"] == "outside_halved" and configs.from_dict(saved).zap == "epoch"
  finally:
    del methods.REGISTRY["outside_halved"]


def test_every_trained_method_is_an_entry_of_parts():
  for name in ("anml", "oml", "pretrain", "asb", "streamhead"):
    m = methods.get(name)
    assert m.trained and m.sampler is not None and "none" in m.zaps
  assert not methods.get("scratch").trained
  assert methods.get("anml").estimator is methods.get("oml").estimator is steps.unrolled
  assert methods.get("asb").sampler is methods.get("anml").sampler


@pytest.mark.parametrize("method, flag, message", [
    ("anml", "--config.zap=epoch", "zap='epoch': method 'anml' can use none, trajectory"),
    ("pretrain", "--config.zap=trajectory", "method 'pretrain' can use none, epoch"),
    ("asb", "--config.meta_batch=2", "asb learns one trajectory per step"),
    ("anml", "--config.zap_scale=wide", "zap_scale='wide'"),
    ("anml", "--config.method=zapnet", "method='zapnet' must be one of"),
])
def test_bad_zap_or_method_is_named_and_nothing_is_written(tmp_path, capsys, method, flag,
                                                           message):
  w = tmp_path / "w"
  assert train.main(["--workdir", str(w), *smoke_args(method), flag]) == 1
  assert message in capsys.readouterr().err
  assert not w.exists()


@pytest.mark.parametrize("method, old, zap", [
    ("anml", True, "trajectory"), ("anml", False, "none"), ("pretrain", False, "none"),
    ("scratch", True, "none"), ("oml", True, "trajectory")])
def test_configs_saved_with_reset_head_rows_load_as_zap(method, old, zap):
  saved = json.loads(configs.get_config("smoke", method).to_json())
  del saved["zap"], saved["zap_scale"]
  saved["reset_head_rows"] = old
  back = configs.from_dict(saved)
  assert back.zap == zap and back.zap_scale == "row"
  configs.validate(back)


def test_asb_trains_and_resumes_from_the_cli(tmp_path):
  w = str(tmp_path / "asb")
  assert train.main(["--workdir", w, *smoke_args("asb", steps=2)]) == 0
  assert train.main(["--workdir", w, "--resume", "--data_source=synthetic", "--noprogress",
                     "--config.steps=4"]) == 0
  saved = json.load(open(os.path.join(w, "config.json")))
  assert saved["zap"] == "trajectory" and saved["model"]["gate"] is False
  assert saved["steps"] == 4


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
  grad = jax.jit(steps.make_meta_gradient(cfg, net))
  _, g_raw, loss_raw, _ = grad(params, jax.random.key(1), jnp.asarray(raw))
  _, g_flt, loss_flt, _ = grad(params, jax.random.key(1), jnp.asarray(flt))
  np.testing.assert_allclose(loss_raw, loss_flt, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               g_raw, g_flt)


def test_a_dataset_with_too_few_drawings_is_refused_before_anything_is_written(tmp_path):
  cfg = configs.get_config("smoke", "anml")
  cfg.update(num_train_classes=8, traj_len=15)
  cfg.model.update(num_outputs=8)
  images = np.zeros((8, 12, 28, 28, 1), np.uint8)
  with pytest.raises(ValueError, match="traj_len=15; the data's classes have 12 drawings "
                     "each: lower it"):
    training.train(cfg, str(tmp_path / "w"), images, progress=False)
  assert not (tmp_path / "w").exists()


def test_train_py_refuses_a_trajectory_longer_than_a_class_before_loading_data(tmp_path,
                                                                               capsys):
  """The Omniglot zips are not even looked for: the error is the config's."""
  run = tmp_path / "w"
  assert train.main(["--workdir", str(run), f"--omniglot_dir={tmp_path / 'none'}",
                     "--config.traj_len=25"]) == 1
  err = capsys.readouterr().err
  assert "traj_len=25; the data's classes have 20 drawings each: lower it" in err
  assert "not found" not in err and not run.exists()
