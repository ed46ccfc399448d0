import jax
import numpy as np
import pytest

from anml_jax import checkpointing, configs, meta
from tests.conftest import CONFIGS, smoke_args, tiny_anml, tiny_oml


def test_round_trip_is_exact_and_keeps_last_n(tmp_path):
  cfg = configs.get_config("smoke")
  net = tiny_anml()
  state = meta.init_state(cfg, net)
  ck = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2)
  for s in range(1, 4):
    state = state._replace(step=np.int32(s))
    ck.save(state, cfg.to_dict())
  restored, m = ck.restore(meta.init_state(cfg, net))
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert m["config"]["method"] == "anml" and m["step"] == 3
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [2, 3]


def test_other_architecture_is_refused_with_the_difference(tmp_path):
  cfg = configs.get_config("smoke")
  ck = checkpointing.Checkpointer(str(tmp_path))
  ck.save(meta.init_state(cfg, tiny_anml()), cfg.to_dict())
  with pytest.raises(checkpointing.CheckpointError, match="another architecture"):
    ck.restore(meta.init_state(cfg, tiny_oml()))
  with pytest.raises(checkpointing.CheckpointError,
                     match="saved \\[27, 7\\], expected \\[27, 9\\]"):
    ck.restore(meta.init_state(cfg, tiny_anml(num_outputs=9)))


def test_empty_dir_says_how_to_get_a_checkpoint(tmp_path):
  ck = checkpointing.Checkpointer(str(tmp_path / "none"))
  with pytest.raises(checkpointing.CheckpointError, match="train one"):
    ck.restore(meta.init_state(configs.get_config("smoke"), tiny_anml()))


def test_exported_parameters_load_back_without_the_head(tmp_path):
  import json
  import os

  from flax import traverse_util

  import evaluate
  import train
  run = str(tmp_path / "run")
  assert train.main(["--workdir", run, *smoke_args()]) == 0
  path = str(tmp_path / "anml.npz")
  info = checkpointing.export_params(run, path)
  assert info["step"] == 6 and info["bytes"] == os.path.getsize(path)
  with np.load(path) as f:
    assert not any(k.startswith("pln/head/") for k in f.files)
  cfg, net, params, step = checkpointing.load_run(run)
  cfg2, net2, params2, step2 = checkpointing.load_run(path)
  assert step2 == step and cfg2.to_dict() == cfg.to_dict()
  a = traverse_util.flatten_dict(params, sep="/")
  b = traverse_util.flatten_dict(params2, sep="/")
  assert set(a) == set(b)
  for k in a:
    if k.startswith("pln/head/"):
      assert a[k].shape == b[k].shape       # freshly drawn: the meta-test redraws it
    else:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  out = str(tmp_path / "ev")
  assert evaluate.main(["--checkpoint", path, "--out", out,
                        f"--eval_config={CONFIGS}/eval.py:smoke", "--eval_config.schedule=(3,)",
                        "--data_source=synthetic"]) == 0
  assert json.load(open(os.path.join(out, "results.json")))["checkpoint_step"] == 6
  with pytest.raises(checkpointing.CheckpointError, match="is a run of anml, not of oml"):
    checkpointing.load_run(path, "oml")
  with pytest.raises(checkpointing.CheckpointError, match="not found"):
    checkpointing.load_run(str(tmp_path / "missing.npz"))
  # a parameter file whose arrays do not fit its config is refused
  with np.load(path) as f:
    arrays = dict(f)
  arrays["nm/to_gate/linear/bias"] = np.zeros(3, np.float32)
  np.savez(str(tmp_path / "bad.npz"), **arrays)
  with pytest.raises(checkpointing.CheckpointError, match="another architecture"):
    checkpointing.load_run(str(tmp_path / "bad.npz"))
