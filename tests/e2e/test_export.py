"""export_params: a trained run's parameters as one shareable file."""
import numpy as np
import pytest

from anml_jax import checkpointing
from tests.conftest import CONFIGS


def test_exported_parameters_load_back_without_the_head(tmp_path, smoke_run):
  import json
  import os

  from flax import traverse_util

  import evaluate
  run = smoke_run
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
