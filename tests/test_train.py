import json
import os

import jax
import numpy as np
import pytest

import train
from anml_jax import checkpointing, configs, meta
from tests.conftest import needs_omniglot

SYN = ["--config", "smoke", "--data-source", "synthetic", "--no-progress",
       "--set", "num_train_classes=30"]


def _params(workdir, method="anml"):
  cfg = configs.get_config("smoke", method)
  cfg.num_train_classes = 30
  net = configs.make_network_from_config(cfg)
  ck = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ck.restore(meta.init_state(cfg, net))
  return state


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  assert train.main(["--workdir", a, *SYN, "--set", "steps=6"]) == 0
  assert train.main(["--workdir", b, *SYN, "--set", "steps=4"]) == 0
  with open(os.path.join(b, "metrics.jsonl"), "a") as f:   # a run killed after
    f.write(json.dumps({"step": 6, "loss": -1.0}) + "\n")  # its last checkpoint
  assert train.main(["--workdir", b, "--resume", *SYN, "--set", "steps=6"]) == 0
  sa, sb = _params(a), _params(b)
  assert int(sa.step) == int(sb.step) == 6
  jax.tree.map(np.testing.assert_array_equal, sa, sb)
  lines = [json.loads(l) for l in open(os.path.join(b, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [2, 4, 6] and lines[-1]["loss"] > 0
  assert os.path.isfile(os.path.join(a, "config.json"))
  assert os.path.getsize(os.path.join(a, "meta_training.png")) > 0
  assert any(f.startswith("events") for f in os.listdir(os.path.join(a, "tb")))


def test_existing_run_is_not_overwritten(tmp_path, capsys):
  w = str(tmp_path / "w")
  assert train.main(["--workdir", w, *SYN, "--set", "steps=2"]) == 0
  assert train.main(["--workdir", w, *SYN, "--set", "steps=2"]) == 1
  assert "--resume" in capsys.readouterr().err


def test_nan_stops_at_the_step_and_keeps_last_good_checkpoint(tmp_path, capsys):
  w = str(tmp_path / "w")
  assert train.main(["--workdir", w, *SYN, "--set", "steps=2"]) == 0
  good = _params(w)
  rc = train.main(["--workdir", w, "--resume", *SYN, "--set", "steps=6",
                   "--set", "inner_lr=1e30"])
  err = capsys.readouterr().err
  assert rc == 1 and "non-finite meta-loss at step 3" in err
  assert "step 2" in err
  jax.tree.map(np.testing.assert_array_equal, _params(w), good)


def test_bad_config_value_is_named(tmp_path, capsys):
  rc = train.main(["--workdir", str(tmp_path / "w"), *SYN, "--set", "traj_len=25"])
  assert rc == 1 and "traj_len=25" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["oml", "pretrain"])
def test_baseline_methods_train(tmp_path, method):
  w = str(tmp_path / method)
  assert train.main(["--workdir", w, *SYN, "--method", method, "--set", "steps=2"]) == 0
  assert int(_params(w, method).step) == 2


@needs_omniglot
def test_smoke_run_on_real_omniglot(tmp_path):
  w = str(tmp_path / "real")
  assert train.main(["--workdir", w, "--config", "smoke", "--no-progress"]) == 0
  lines = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  assert lines[-1]["step"] == 6 and np.isfinite(lines[-1]["loss"])
