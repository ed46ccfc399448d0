"""The shipped ANML meta-parameters (results/pretrained/anml_omniglot.npz,
20,000 meta-steps, results/README.md) load through the library and
evaluate.py, and their gated features tell apart meta-test classes they never
saw. ``pytest -s tests/test_pretrained.py`` prints the measured accuracies."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import anml_jax
import evaluate
from anml_jax import analysis
from tests.conftest import CONFIGS, needs_omniglot

PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "results", "pretrained", "anml_omniglot.npz")


def test_pretrained_file_is_the_20000_step_second_order_anml_run():
  cfg, net, params, step = anml_jax.load_run(PRETRAINED, method="anml")
  assert (step, cfg.steps, cfg.first_order, cfg.seed) == (20000, 20000, False, 9)
  x = jnp.zeros((2, 28, 28, 1))
  assert net.apply(params, x).shape == (2, cfg.model.num_outputs)
  gate = jax.nn.sigmoid(net.context(params, x))
  assert gate.shape == (2, 2304)


def gated_features(net, params, classes: np.ndarray) -> np.ndarray:
  """classes (C, 20, 28, 28, 1) -> (C, 20, D) gated PLN features."""
  x = jnp.asarray(classes.reshape(-1, 28, 28, 1))
  f = net.features(params, x, net.context(params, x))
  return np.asarray(f).reshape(*classes.shape[:2], -1)


@needs_omniglot
def test_pretrained_features_separate_unseen_classes(omniglot):
  cfg, net, params, _ = anml_jax.load_run(PRETRAINED)
  classes = omniglot.evaluation[::13][:50]     # 50 meta-test classes, all alphabets
  # KNN (k = 5) with the meta-test split: drawings 1-15 are the neighbours.
  trained = analysis.knn_on_drawings(gated_features(net, params, classes))
  untrained = analysis.knn_on_drawings(
      gated_features(net, net.init(jax.random.key(cfg.seed)), classes))
  print(f"KNN on 50 unseen classes: trained {trained:.2f}, untrained {untrained:.2f}")
  # Measured 0.82 and 0.59 (chance 0.02) on 250 test drawings: each bound is
  # 20 or more drawings away, far beyond float rounding between CPUs.
  assert trained >= 0.70
  assert trained >= untrained + 0.15


@needs_omniglot
def test_evaluate_reads_the_pretrained_file(tmp_path):
  out = tmp_path / "ev"
  assert evaluate.main([f"--checkpoint={PRETRAINED}", f"--out={out}", "--method=anml",
                        f"--eval_config={CONFIGS}/eval.py:smoke",
                        "--eval_config.schedule=(5,)", "--eval_config.class_pool=10",
                        "--eval_config.search_pool=10"]) == 0
  results = json.load(open(out / "results.json"))
  assert (results["method"], results["checkpoint_step"]) == ("anml", 20000)
