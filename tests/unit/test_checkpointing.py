import jax
import numpy as np
import pytest

from anml_jax import checkpointing, configs, meta
from tests.conftest import tiny_anml, tiny_oml


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
