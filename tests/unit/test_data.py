import hashlib
import zipfile

import jax
import numpy as np
import pytest

from anml_jax import configs, data
from tests.conftest import needs_omniglot


@needs_omniglot
def test_real_omniglot_counts_and_preprocessing(omniglot):
  assert omniglot.background.shape == (964, 20, 28, 28, 1)
  assert omniglot.evaluation.shape == (659, 20, 28, 28, 1)
  assert len(set(omniglot.background_names)) == 964
  assert len(set(omniglot.evaluation_names)) == 659
  assert omniglot.background.dtype == np.float32
  # White background -> (255 - mean) / std is the most common value.
  vals, counts = np.unique(omniglot.background[:5], return_counts=True)
  np.testing.assert_allclose(vals[np.argmax(counts)], (255 - data.MEAN) / data.STD,
                             rtol=1e-5)


@needs_omniglot
def test_background_and_evaluation_are_disjoint(omniglot):
  def digests(a):
    a = np.ascontiguousarray(a.reshape(-1, 28 * 28))
    return {hashlib.sha1(r.tobytes()).hexdigest() for r in a}
  assert not digests(omniglot.background) & digests(omniglot.evaluation)


@needs_omniglot
def test_task_sampling_uses_only_meta_train_classes(omniglot):
  n = 963
  imgs = jax.numpy.asarray(omniglot.background[:n])
  tasks = jax.jit(lambda k: data.sample_tasks(
      k, imgs, meta_batch=4, traj_len=20, remember_size=64))(jax.random.key(0))
  assert tasks.x_traj.shape == (4, 20, 28, 28, 1)
  assert tasks.x_rem.shape == (4, 84, 28, 28, 1)
  y_rem = np.asarray(tasks.y_rem)
  assert y_rem.max() < n and len(set(np.asarray(tasks.y_traj[:, 0]))) == 4
  # Every sampled image is one of its label's drawings of the background set.
  x = np.asarray(tasks.x_rem)
  for b in range(4):
    for i in range(84):
      cls = omniglot.background[y_rem[b, i]]
      assert np.any(np.all(cls == x[b, i], axis=(1, 2, 3)))
  # The trajectory holds all 20 distinct drawings of its class.
  traj = np.asarray(tasks.x_traj[0]).reshape(20, -1)
  assert len({r.tobytes() for r in traj}) == 20


def test_missing_data_dir_names_the_fix(tmp_path):
  with pytest.raises(data.DataError, match="--omniglot_dir"):
    data.load_omniglot(str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_corrupt_zip_is_reported(tmp_path):
  for s in ("background", "evaluation"):
    (tmp_path / f"images_{s}.zip").write_bytes(b"not a zip")
  with pytest.raises(data.DataError, match="intact copy"):
    data.load_omniglot(str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_incomplete_zip_is_reported(tmp_path):
  for s in ("background", "evaluation"):
    with zipfile.ZipFile(tmp_path / f"images_{s}.zip", "w") as z:
      z.writestr(f"images_{s}/Alpha/character01/0001_01.png", b"")
  with pytest.raises(data.DataError, match="character folders"):
    data.load_omniglot(str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_tfds_examples_convert_to_the_same_layout():
  rng = np.random.default_rng(0)
  examples = [{"image": (rng.random((105, 105, 3)) > 0.5).astype(np.uint8) * 255,
               "label": 964 + c} for c in range(3) for _ in range(20)]
  arr = data.examples_to_arrays(examples, 3)
  assert arr.shape == (3, 20, 28, 28) and arr.dtype == np.uint8
  with pytest.raises(data.DataError, match="expected 4"):
    data.examples_to_arrays(examples, 4)


def test_synthetic_data_shapes():
  o = data.synthetic(background=5, evaluation=3)
  assert o.background.shape == (5, 20, 28, 28, 1)
  assert o.evaluation.shape == (3, 20, 28, 28, 1)


def test_holding_out_alphabets_splits_the_meta_training_classes():
  names = ["A/c1", "B/c1", "A/c2", "C/c1", "B/c2"]
  bg = np.arange(5)[:, None, None, None, None] * np.ones((5, 2, 3, 3, 1))
  split = data.ClassSplit(bg, np.zeros((1, 2, 3, 3, 1)), names, ["Z/c1"])
  held = data.hold_out(split, ("B",))
  assert held.background_names == ["A/c1", "A/c2", "C/c1"]
  assert held.evaluation_names == ["B/c1", "B/c2"]
  np.testing.assert_array_equal(held.background[:, 0, 0, 0, 0], [0, 2, 3])
  np.testing.assert_array_equal(held.evaluation[:, 0, 0, 0, 0], [1, 4])
  with pytest.raises(data.DataError, match="validation alphabets Q are not among"):
    data.hold_out(split, ("B", "Q"))


@needs_omniglot
def test_the_project_s_validation_alphabets_hold_out_212_whole_classes(omniglot):
  held = data.hold_out(omniglot, configs.VALIDATION_ALPHABETS)
  assert held.evaluation.shape[0] == 212 and held.background.shape[0] == 752
  assert configs.VALIDATION_TRAIN_CLASSES == held.background.shape[0]
  alphabets = lambda names: {str(n).split("/")[0] for n in names}
  assert alphabets(held.evaluation_names) == set(configs.VALIDATION_ALPHABETS)
  assert not alphabets(held.evaluation_names) & alphabets(held.background_names)
  assert not alphabets(held.evaluation_names) & alphabets(omniglot.evaluation_names)
