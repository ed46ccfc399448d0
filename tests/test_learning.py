"""Real-data learning signal: a few hundred meta-steps lower the meta-loss."""
import json
import os

import numpy as np

import train
from tests.conftest import needs_omniglot


@needs_omniglot
def test_meta_training_on_real_omniglot_lowers_the_meta_loss(tmp_path):
  w = str(tmp_path / "learn")
  assert train.main([
      "--workdir", w, "--config", "smoke", "--no-progress",
      "--set", "steps=300", "--set", "log_every=10", "--set", "ckpt_every=300",
      "--set", "traj_len=10", "--set", "remember_size=32",
      "--set", "model.nm_channels=16", "--set", "model.pln_channels=32"]) == 0
  loss = np.array([json.loads(l)["loss"] for l in open(os.path.join(w, "metrics.jsonl"))])
  first, last = loss[:5].mean(), loss[-5:].mean()   # 50 steps each
  assert last < first - 0.5, (first, last)
