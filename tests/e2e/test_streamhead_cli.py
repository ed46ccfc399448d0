"""Meta-training through a closed-form head (method 'streamhead')."""
import os

import jax
import numpy as np
import pytest

import evaluate
import train
from anml_jax import checkpointing, meta, methods, training
from tests.conftest import CONFIGS, smoke_args


def test_trains_from_the_command_line_and_evaluates_with_a_head(tmp_path):
  w, out = str(tmp_path / "w"), str(tmp_path / "eval")
  assert train.main(["--workdir", w, *smoke_args("streamhead", steps=2)]) == 0
  cfg, net, params, step = checkpointing.load_run(w)
  assert cfg.method == "streamhead" and step == 2
  assert evaluate.main([f"--checkpoint={w}", f"--eval_config={CONFIGS}/eval.py:smoke",
                        "--eval_config.learner=prototype", "--data_source=synthetic",
                        f"--out={out}"]) == 0
  assert os.path.isfile(os.path.join(out, "results.json"))
  # a run may start from another's parameters (config init_params)
  npz = str(tmp_path / "p.npz")
  checkpointing.export_params(w, npz)
  cfg.init_params = npz
  state = training.warm_start(cfg, net, meta.init_state(cfg, net))
  jax.tree.map(np.testing.assert_array_equal, state.params["nm"], params["nm"])
  jax.tree.map(np.testing.assert_array_equal, state.params["pln"]["features"],
               params["pln"]["features"])
  assert int(state.step) == 0
  cfg.model.pln_channels += 1
  with pytest.raises(checkpointing.CheckpointError, match="do not fit the network"):
    training.warm_start(cfg, methods.network(cfg), meta.init_state(cfg, methods.network(cfg)))
  w2 = tmp_path / "w2"
  assert train.main(["--workdir", str(w2), *smoke_args("streamhead"),
                     f"--config.init_params={tmp_path / 'missing.npz'}"]) == 1
  assert not w2.exists()
