"""Real-data learning signal: a few hundred meta-steps lower the meta-loss."""
import json
import os

import numpy as np
import pytest

import train
from tests.conftest import CONFIGS, needs_omniglot


@pytest.mark.slow
@needs_omniglot
def test_meta_training_on_real_omniglot_lowers_the_meta_loss(tmp_path):
  w = str(tmp_path / "learn")
  assert train.main([
      "--workdir", w, f"--config={CONFIGS}/anml.py:smoke", "--noprogress",
      "--config.steps=300", "--config.log_every=10", "--config.ckpt_every=300",
      "--config.traj_len=10", "--config.remember_size=32",
      "--config.model.nm_channels=16", "--config.model.pln_channels=32"]) == 0
  loss = np.array([json.loads(l)["loss"] for l in open(os.path.join(w, "metrics.jsonl"))])
  first, last = loss[:5].mean(), loss[-5:].mean()   # 50 steps each
  assert last < first - 0.5, (first, last)
