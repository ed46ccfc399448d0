import json
import os

import numpy as np
import pytest

import train
from tests.conftest import CONFIGS, needs_omniglot


@pytest.mark.slow
@needs_omniglot
def test_smoke_run_on_real_omniglot(tmp_path):
  w = str(tmp_path / "real")
  assert train.main(["--workdir", w, f"--config={CONFIGS}/anml.py:smoke", "--noprogress"]) == 0
  lines = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  assert lines[-1]["step"] == 6 and np.isfinite(lines[-1]["loss"])
