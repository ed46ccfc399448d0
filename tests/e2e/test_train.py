import json
import os

import jax
import numpy as np
import pytest

import train
from anml_jax import checkpointing, configs, meta, methods
from tests.conftest import CONFIGS, SYNTHETIC, smoke_args


def _params(workdir, method="anml"):
  cfg = configs.get_config("smoke", method)
  cfg.num_train_classes = 30
  net = methods.network(cfg)
  ck = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ck.restore(meta.init_state(cfg, net))
  return state


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  assert train.main(["--workdir", a, *smoke_args(steps=6)]) == 0
  assert train.main(["--workdir", b, *smoke_args(steps=4)]) == 0
  with open(os.path.join(b, "metrics.jsonl"), "a") as f:   # a run killed after
    f.write(json.dumps({"step": 6, "loss": -1.0}) + "\n")  # its last checkpoint
  assert train.main(["--workdir", b, "--resume", *SYNTHETIC, "--config.steps=6"]) == 0
  sa, sb = _params(a), _params(b)
  assert int(sa.step) == int(sb.step) == 6
  jax.tree.map(np.testing.assert_array_equal, sa, sb)
  lines = [json.loads(l) for l in open(os.path.join(b, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [2, 4, 6] and lines[-1]["loss"] > 0
  assert os.path.isfile(os.path.join(a, "config.json"))
  assert os.path.getsize(os.path.join(a, "meta_training.png")) > 0
  assert any(f.startswith("events") for f in os.listdir(os.path.join(a, "tb")))
  starts = [json.loads(l) for l in open(os.path.join(b, "provenance.jsonl"))]
  assert [p["start_step"] for p in starts] == [0, 4]
  assert "--resume" in starts[1]["command"] and starts[1]["packages"]["jax"] == jax.__version__


def test_existing_run_is_not_overwritten(tmp_path, capsys):
  w = str(tmp_path / "w")
  assert train.main(["--workdir", w, *smoke_args(steps=2)]) == 0
  assert train.main(["--workdir", w, *smoke_args(steps=2)]) == 1
  assert "--resume" in capsys.readouterr().err
  assert len(open(os.path.join(w, "provenance.jsonl")).readlines()) == 1


def test_nan_stops_at_the_step_and_keeps_last_good_checkpoint(tmp_path, capsys):
  w = str(tmp_path / "w")
  assert train.main(["--workdir", w, *smoke_args(steps=2)]) == 0
  good = _params(w)
  rc = train.main(["--workdir", w, "--resume", *SYNTHETIC, "--config.steps=6",
                   "--config.inner_lr=1e30"])
  err = capsys.readouterr().err
  assert "note: resuming with inner_lr = 1e+30 (was 0.1)" in err
  assert rc == 1 and "non-finite meta-loss at step 3" in err
  assert "step 2" in err
  jax.tree.map(np.testing.assert_array_equal, _params(w), good)


@pytest.mark.parametrize("flag, message", [
    ("--config.traj_len=25", "traj_len=25"),
    ("--config.meta_lr=nan", "meta_lr=nan must be a positive number"),
    ("--config.steps=abc", "config.steps"),
    ("--config.stepz=3", "no such config field: 'stepz'"),
    ("--config.inner_optimizer=rmsprop", "inner_optimizer='rmsprop'"),
    ("--config.holdout_drawings=5", "method 'anml' has no held-out score"),
])
def test_bad_config_value_is_named_and_nothing_is_written(tmp_path, capsys, flag, message):
  w = tmp_path / "w"
  rc = train.main(["--workdir", str(w), *smoke_args(), flag])
  assert rc == 1 and message in capsys.readouterr().err
  assert not w.exists()


def test_resume_refuses_another_config_and_keeps_the_run(tmp_path, capsys):
  w = str(tmp_path / "w")
  assert train.main(["--workdir", w, *smoke_args(steps=2)]) == 0
  saved = open(os.path.join(w, "config.json")).read()
  rc = train.main(["--workdir", w, "--resume", *SYNTHETIC,
                   f"--config={CONFIGS}/anml.py", "--config.steps=4"])
  assert rc == 1 and "drop --config" in capsys.readouterr().err
  assert open(os.path.join(w, "config.json")).read() == saved
  assert int(_params(w).step) == 2


def test_saved_config_reloads_typed_and_fills_new_keys():
  cfg = configs.get_config("smoke", "oml")
  cfg.inner_params = ("pln/head",)
  saved = json.loads(cfg.to_json())
  del saved["inner_optimizer"]          # a run made before the key existed
  saved["arch"] = "oml"                 # a key earlier versions saved
  back = configs.from_dict(saved)
  assert back.inner_params == ("pln/head",) and back.inner_optimizer == "sgd"
  assert back.to_dict() == cfg.to_dict()
  with pytest.raises(ValueError, match="unknown key 'model.depth'"):
    configs.from_dict({**saved, "model": {**saved["model"], "depth": 3}})
  # A run saved before the factored head continues with the dense head it used.
  assert back.low_rank_head
  assert not configs.from_dict({k: v for k, v in saved.items() if k != "low_rank_head"}
                               ).low_rank_head


@pytest.mark.parametrize("method", ["oml", "pretrain"])
def test_baseline_methods_train(tmp_path, method):
  w = str(tmp_path / method)
  assert train.main(["--workdir", w, *smoke_args(method, steps=2)]) == 0
  assert int(_params(w, method).step) == 2


def test_pretraining_logs_its_held_out_accuracy_at_every_checkpoint(tmp_path):
  w = str(tmp_path / "p")
  assert train.main(["--workdir", w, *smoke_args("pretrain", holdout_drawings=5)]) == 0
  lines = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  scored = [l["step"] for l in lines if "holdout_accuracy" in l]
  assert scored == [2, 4, 6]                 # ckpt_every=2 in the smoke config
  assert all(0 <= l["holdout_accuracy"] <= 1 for l in lines if "holdout_accuracy" in l)


def test_scratch_is_not_trained(tmp_path, capsys):
  w = tmp_path / "s"
  assert train.main(["--workdir", str(w), *smoke_args("scratch")]) == 1
  assert "is not trained" in capsys.readouterr().err and not w.exists()


def test_help_lists_the_flags(capsys):
  assert train.main(["--help"]) == 0
  out = capsys.readouterr().out
  assert "--workdir" in out and "--config.KEY=VALUE" in out
