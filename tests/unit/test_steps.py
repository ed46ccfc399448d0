"""The training step built from parts: each part, the registry, and a method
registered from outside the package."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from anml_jax import configs, data, methods, steps, training
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
