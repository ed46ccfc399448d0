"""The meta-test learners as a registry: a learner registered from outside the
package runs through evaluate.py like the built-in ones."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

import evaluate
from anml_jax import configs, heads, learners
from tests.conftest import CONFIGS

SMOKE = [f"--config={CONFIGS}/scratch.py:smoke", f"--eval_config={CONFIGS}/eval.py:smoke",
         "--data_source=synthetic"]


def _nearest_mean(stats, reg):
  """The nearest-class-mean readout, written here: logits 2 x.mu - |mu|^2."""
  del reg
  mu = stats.sums / jnp.maximum(stats.count, 1)[:, None]
  return 2.0 * mu.T, jnp.where(stats.count > 0, -jnp.sum(mu * mu, -1), -jnp.inf)


def test_every_built_in_learner_is_registered_with_its_hyperparameter():
  assert {n: learners.get(n).hyper for n in learners.LEARNERS} == {
      "adam": "lr", "prototype": "none", "prototype_cosine": "none", "ridge": "ridge",
      "gaussian": "shrinkage"}
  c = configs.get_eval_config("default")
  assert learners.get("adam").grid(c) == tuple(c.lrs)
  assert learners.get("gaussian").grid(c) == heads.get("gaussian").regs
  c.regs = (0.2,)
  assert learners.get("gaussian").grid(c) == (0.2,)
  with pytest.raises(ValueError, match="already registered"):
    learners.register(learners.get("adam"))


def test_a_learner_registered_from_outside_runs_through_evaluate(tmp_path, monkeypatch):
  """A nearest-class-mean head written in this test and registered under a
  new name gives the built-in prototype head's record, value for value."""
  mine = learners.head_learner(heads.Head("my_nearest_mean", False, False, None, _nearest_mean),
                               "none")
  monkeypatch.setitem(learners.LEARNERS, mine.name, mine)
  records = {}
  for name in ("my_nearest_mean", "prototype"):
    out = str(tmp_path / name)
    assert evaluate.main([*SMOKE, "--out", out, f"--eval_config.learner={name}"]) == 0
    records[name] = json.load(open(os.path.join(out, "results.json")))
  a, b = records["my_nearest_mean"], records["prototype"]
  assert a["protocol"]["learner"] == "my_nearest_mean" and a["hyper_name"] == "none"
  assert a["finetune"] == b["finetune"] == ["pln/head"]
  for ra, rb in zip(a["per_n"], b["per_n"], strict=True):
    assert ra["classes"] == rb["classes"] and ra["hyper"] == rb["hyper"] == 0.0
    np.testing.assert_allclose(ra["test_runs"], rb["test_runs"], atol=1e-6)
    np.testing.assert_allclose(ra["train_runs"], rb["train_runs"], atol=1e-6)


def test_a_learner_s_own_validation_names_the_field(tmp_path):
  c = configs.get_eval_config("smoke")
  c.learner, c.regs = "gaussian", (1.5,)
  with pytest.raises(ValueError, match=r"shrinkage must lie in \(0, 1\]"):
    configs.validate_eval(c)
  c.learner = "nope"
  with pytest.raises(ValueError, match="not a registered learner; choose one of adam, gaussian"):
    configs.validate_eval(c)
