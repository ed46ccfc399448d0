
import jax
import numpy as np
import pytest

from anml_jax import checkpointing, configs, data, evaluation, methods, training


def test_a_dataset_of_another_shape_trains_and_is_evaluated(tmp_path):
  """Nothing outside the Omniglot loader assumes its sizes: a set of 12
  drawings per class of 20 x 20 images meta-trains ANML (network built for
  20 px) and goes through the meta-test; a network built for another size
  is refused, naming the fix, before anything is written."""
  small = data.synthetic(0, background=10, evaluation=6, drawings=12, image_size=20,
                         raw=True)
  assert small.drawings == 12 and small.image_shape == (20, 20, 1)
  cfg = configs.get_config("smoke", "anml")
  cfg.update(num_train_classes=10, traj_len=4, remember_size=8, steps=2, log_every=2,
             ckpt_every=2, first_order=True)
  cfg.model.update(num_outputs=10)
  with pytest.raises(ValueError, match=r"images are \(20, 20, 1\) but the anml network "
                     r"takes \(28, 28, 1\).*--config.model.image_size=20"):
    training.train(cfg, str(tmp_path / "wrong"), small.background, progress=False)
  assert not (tmp_path / "wrong").exists()
  cfg.model.image_size = 20
  training.train(cfg, str(tmp_path / "run"), small.background, progress=False)
  _, net, params, step = checkpointing.load_run(str(tmp_path / "run"))
  assert step == 2 and net.input_shape == (20, 20, 1)
  x = data.to_float(small.evaluation[:2, :3].reshape(6, 20, 20, 1))
  assert np.all(np.isfinite(net.apply(params, x)))
  ecfg = configs.get_eval_config("smoke")
  ecfg.update(schedule=(3,), class_pool=6, search_pool=10, train_per_class=8,
              search_runs=1)
  floats = data.ClassSplit(*(data.to_float(a) for a in small[:2]), *small[2:])
  res = evaluation.meta_test("anml", net, params, floats, ecfg, log=lambda s: None)
  (row,) = res["per_n"]
  assert row["classes"] == 3 and len(row["test_runs"]) == 2
  assert 0.0 <= row["test_mean"] <= 1.0
  ecfg.train_per_class = 12
  with pytest.raises(ValueError, match="train_per_class=12 leaves none of a class's 12"):
    evaluation.meta_test("anml", net, params, floats, ecfg, log=lambda s: None)
  wide = configs.get_config("smoke", "anml")
  with pytest.raises(ValueError, match=r"--config.model.image_size=20"):
    evaluation.meta_test("anml", methods.network(wide), params, floats, ecfg,
                         log=lambda s: None)


def test_rotated_classes_are_new_classes_and_pretraining_samples_them(tmp_path):
  """``rotations`` turns every training class by 0, 90, 180, 270 degrees,
  each turn a class of its own: class ``k * C + c`` is class ``c`` turned
  ``k`` times (so 4 turns give the class back); pretraining with them needs
  a head with an output per turned class, and draws labels beyond C."""
  imgs = data.synthetic(0, background=3, evaluation=1, drawings=4, raw=True).background
  four = data.with_rotations(imgs, 4)
  assert four.shape == (12,) + imgs.shape[1:] and four.dtype == imgs.dtype
  np.testing.assert_array_equal(four[:3], imgs)
  np.testing.assert_array_equal(four[3 + 1, 2, :, :, 0], np.rot90(imgs[1, 2, :, :, 0]))
  np.testing.assert_array_equal(np.rot90(four[9:], 1, axes=(2, 3)), imgs)
  assert not np.array_equal(four[3:6], imgs)
  assert data.with_rotations(imgs, 1) is imgs
  with pytest.raises(ValueError, match="rotations=5 must be 1, 2, 3 or 4"):
    data.with_rotations(imgs, 5)
  with pytest.raises(ValueError, match="needs square images"):
    data.with_rotations(np.zeros((2, 3, 4, 5, 1), np.uint8), 2)
  cfg = configs.get_config("smoke", "pretrain")
  cfg.update(num_train_classes=3, rotations=4, pretrain_batch=24, steps=2, log_every=2,
             ways=3, traj_len=4, ckpt_every=2)
  cfg.model.update(num_outputs=11)
  with pytest.raises(ValueError, match=r"num_train_classes=3 x rotations=4 exceeds the "
                     r"head's num_outputs=11: raise model.num_outputs"):
    configs.validate(cfg)
  cfg.model.num_outputs = 12
  y = methods.get("pretrain").sampler(cfg, None)(jax.random.key(0), four)[1]
  assert int(y.max()) >= 3                       # the turned classes are drawn
  training.train(cfg, str(tmp_path / "run"), imgs, progress=False)
  saved, _, _, step = checkpointing.load_run(str(tmp_path / "run"))
  assert step == 2 and saved.rotations == 4
  assert configs.upgrade({k: v for k, v in cfg.to_dict().items()
                          if k != "rotations"})["rotations"] == 1


def test_pretraining_batches_are_moved_each_image_its_own_way(tmp_path):
  """``shift`` moves every image of an i.i.d. batch by its own random number
  of pixels (each one of :func:`data.shifted`'s moves, up to ``shift`` each
  way), draws the same images and labels as no shift, and is refused where
  it cannot apply."""
  imgs = data.synthetic(0, background=6, evaluation=1, drawings=4, raw=True).background
  x = jax.random.uniform(jax.random.key(0), (64, 8, 8, 1))
  moved = np.asarray(data.random_shifts(jax.random.key(1), x, 2))
  found = [[(d, r) for d in range(-2, 3) for r in range(-2, 3)
            if np.array_equal(moved[i], np.asarray(data.shifted(x[i], d, r)))]
           for i in range(64)]
  assert all(len(f) == 1 for f in found)                  # uniform noise: one move fits
  assert len({f[0] for f in found}) > 10                  # not one move for all
  assert {abs(m) for f in found for m in f[0]} == {0, 1, 2}
  assert data.random_shifts(jax.random.key(1), x, 0) is x
  cfg = configs.get_config("smoke", "pretrain")
  cfg.update(num_train_classes=6, pretrain_batch=12)
  plain = methods.get("pretrain").sampler(cfg, None)(jax.random.key(3), imgs)
  cfg.shift = 1
  configs.validate(cfg)
  xs, ys = methods.get("pretrain").sampler(cfg, None)(jax.random.key(3), imgs)
  np.testing.assert_array_equal(ys, plain[1])
  assert all(any(np.array_equal(np.asarray(xs[i]), np.asarray(data.shifted(plain[0][i], d, r)))
                 for d in (-1, 0, 1) for r in (-1, 0, 1)) for i in range(12))
  assert not np.array_equal(np.asarray(xs), np.asarray(plain[0]))
  cfg.shift = 14
  with pytest.raises(ValueError, match="shift=14 must be a whole number of pixels from 0 to 13"):
    configs.validate(cfg)
  anml = configs.get_config("smoke", "anml")
  anml.shift = 1
  with pytest.raises(ValueError, match="shift applies to pretrain only"):
    configs.validate(anml)
  assert configs.upgrade({k: v for k, v in cfg.to_dict().items() if k != "shift"})["shift"] == 0
