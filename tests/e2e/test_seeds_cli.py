"""Seeds as a vmapped axis: K seeds in one program are K one-seed runs."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

import evaluate
import train
from anml_jax import checkpointing
from tests.conftest import CONFIGS, SYNTHETIC, smoke_args


def test_a_seed_run_trains_resumes_exports_and_evaluates_per_seed(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  # first order: the cheapest compile of the same training loop
  assert train.main(["--workdir", a, *smoke_args(seeds=2, steps=4, first_order=True)]) == 0
  assert train.main(["--workdir", b, *smoke_args(seeds=2, steps=2, first_order=True)]) == 0
  assert train.main(["--workdir", b, "--resume", *SYNTHETIC, "--config.steps=4"]) == 0
  cfg, net, pa, step = checkpointing.load_run(a)
  _, _, pb, _ = checkpointing.load_run(b)
  assert step == 4 and cfg.seeds == 2
  jax.tree.map(np.testing.assert_array_equal, pa, pb)      # resumed = uninterrupted
  rows = [json.loads(l) for l in open(os.path.join(a, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [2, 4]
  assert len(rows[0]["loss_per_seed"]) == 2
  assert rows[0]["loss"] == pytest.approx(np.mean(rows[0]["loss_per_seed"]))
  # export per seed: a one-seed file of each
  with pytest.raises(checkpointing.CheckpointError, match=r"trained seeds \[9, 10\]"):
    checkpointing.export_params(a, str(tmp_path / "x.npz"))
  path = str(tmp_path / "s10.npz")
  checkpointing.export_params(a, path, seed=10)
  c10, _, p10, _ = checkpointing.load_run(path)
  assert (c10.seed, c10.seeds) == (10, 1)
  flat = traverse_util.flatten_dict(p10, sep="/")
  for k, v in traverse_util.flatten_dict(pa, sep="/").items():
    if not k.startswith("pln/head/"):
      np.testing.assert_array_equal(flat[k], v[1], err_msg=k)
  # evaluate.py: each seed its own record
  out = str(tmp_path / "ev")
  assert evaluate.main(["--checkpoint", a, "--out", out, f"--eval_config={CONFIGS}/eval.py:smoke",
                        "--eval_config.schedule=(3,)", "--data_source=synthetic"]) == 0
  seeds = [json.load(open(os.path.join(out, f"seed_{s}", "results.json")))["model_config"]["seed"]
           for s in (9, 10)]
  assert seeds == [9, 10]
  # an evaluation stopped between its seeds: --resume starts the seed not reached
  # and leaves the finished one's record as it was
  first = open(os.path.join(out, "seed_9", "results.json")).read()
  second = json.load(open(os.path.join(out, "seed_10", "results.json")))
  shutil.rmtree(os.path.join(out, "seed_10"))
  assert evaluate.main(["--checkpoint", a, "--out", out, "--resume",
                        "--data_source=synthetic"]) == 0
  assert open(os.path.join(out, "seed_9", "results.json")).read() == first
  again = json.load(open(os.path.join(out, "seed_10", "results.json")))
  assert again["protocol"] == second["protocol"]          # the sibling's, not the default
  np.testing.assert_allclose(again["per_n"][0]["test_runs"],
                             second["per_n"][0]["test_runs"], atol=1e-6)
  # with no seed begun, --resume has nothing to continue
  empty = str(tmp_path / "none")
  assert evaluate.main(["--checkpoint", a, "--out", empty, "--resume",
                        "--data_source=synthetic"]) == 1
  assert not os.path.exists(empty)
