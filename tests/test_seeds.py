"""Seeds as a vmapped axis: K seeds in one program are K one-seed runs."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import evaluate
import train
from anml_jax import checkpointing, configs, meta, methods
from tests.conftest import CONFIGS, SYNTHETIC, smoke_args, tiny_anml


def _cfg(**kw):
  cfg = configs.get_config("smoke", kw.get("method", "anml"))
  cfg.update(num_train_classes=12, **kw)
  cfg.model.update(nm_channels=2, pln_channels=3, num_outputs=12)
  return cfg


@pytest.mark.parametrize("method,zap", [("anml", "trajectory"), ("pretrain", "none"),
                                        ("asb", "none"), ("asb", "trajectory")])
def test_k_seeds_in_one_program_equal_k_one_seed_runs_float64(method, zap, x64):
  """float64: in float32 the conv biases before a norm, whose meta-gradient
  is zero in exact arithmetic, turn summation-order noise into +-lr Adam
  steps, so two exact-equal paths part by ~lr there (tests/test_sharding.py).
  ASB with zapping: each seed draws its own rows from its own stream."""
  cfg = _cfg(method=method, zap=zap, seeds=2, first_order=True)   # vmap is blind to the order
  net = methods.network(cfg)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(12, 20, 28, 28, 1)))
  to64 = lambda t: jax.tree.map(
      lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
  stacked = to64(meta.init_state(cfg, net))
  step = methods.get(method).make_step(cfg, net)
  many = jax.jit(meta.over_seeds(step, 2))
  one = jax.jit(step)
  singles = []
  for s in meta.seed_list(cfg):
    c = _cfg(method=method, zap=zap, seed=s, first_order=True)
    singles.append(to64(meta.init_state(c, net)))
  for _ in range(2):
    stacked, m_many = many(stacked, images)
    outs = [one(st, images) for st in singles]
    singles = [o[0] for o in outs]
    np.testing.assert_allclose(m_many["loss"], [o[1]["loss"] for o in outs], rtol=1e-10)
  assert meta.steps_taken(stacked) == 2
  # atol: float64 noise on the zero-gradient biases, lr * 1e-17 / eps ~ 1e-12
  for i, single in enumerate(singles):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-9, atol=1e-9),
                 stacked, single)


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


def test_seeds_must_be_positive(tmp_path, capsys):
  assert train.main(["--workdir", str(tmp_path / "w"), *smoke_args(seeds=0)]) == 1
  assert "seeds=0 must be a positive integer" in capsys.readouterr().err


def test_split_seeds_keeps_a_one_seed_run_whole():
  cfg = configs.get_config("smoke")
  params = tiny_anml().init(jax.random.key(0))
  assert meta.split_seeds(cfg, params) == [(cfg, params)]
