"""Representation analyses: known answers on synthetic cases, ANML's probes,
and a smoke run of analyze.py."""

import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import analysis, gating
from tests.conftest import tiny_anml


def test_active_fraction_and_dead_units_on_known_activations():
  acts = jnp.array([[0.0, 2.0, -1.0, 0.1],
                    [0.0, 1.0, 0.5, -3.0]])
  np.testing.assert_allclose(analysis.active_fraction(acts), [0.5, 0.5])
  assert int(analysis.dead_units(acts)) == 1               # unit 0 is never > 0
  # relative threshold: above 10% of each image's largest activation
  np.testing.assert_allclose(analysis.active_fraction(acts, 0.1), [0.25, 0.5])
  assert int(analysis.dead_units(acts, 0.1)) == 2           # units 0 and 3


def test_a_closed_gate_leaves_no_active_unit():
  h = jnp.abs(jax.random.normal(jax.random.key(0), (4, 9))) + 0.1   # all active
  closed = gating.gate(h, jnp.full((4, 9), -1e4))
  assert float(analysis.active_fraction(h).mean()) == 1.0
  assert float(analysis.active_fraction(closed).mean()) == 0.0
  assert int(analysis.dead_units(closed)) == 9


def _clusters(classes=6, per_class=20, dim=16, spread=0.01, seed=0):
  """(C, per_class, dim): tight clusters around far-apart centres."""
  rng = np.random.default_rng(seed)
  centres = 10 * rng.normal(size=(classes, 1, dim))
  return centres + spread * rng.normal(size=(classes, per_class, dim))


def test_knn_separates_separated_clusters_and_not_noise():
  reps = _clusters()
  assert analysis.knn_on_drawings(reps, k=5, train_per_class=15) == 1.0
  noise = np.random.default_rng(1).normal(size=(6, 20, 16))
  acc = analysis.knn_on_drawings(noise, k=5, train_per_class=15)   # 30 test points, chance 1/6
  assert acc < 0.6


def test_tsne_keeps_separated_clusters_separated():
  reps = _clusters(classes=4, per_class=10)
  xy = analysis.tsne_2d(reps.reshape(40, -1), seed=0)
  assert xy.shape == (40, 2)
  labels = np.repeat(np.arange(4), 10)
  assert analysis.knn_accuracy(xy, labels, xy, labels, k=3) == 1.0


def test_anml_probes_are_the_forward_pass_pieces():
  net = tiny_anml(num_outputs=5)
  params = net.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
  p = net.probes(params, x)
  assert set(p) == {"pln_before_gate", "gate", "pln_after_gate", "nm"}
  np.testing.assert_allclose(p["pln_after_gate"],
                             net.features(params, x, net.context(params, x)), rtol=1e-6)
  np.testing.assert_allclose(p["pln_after_gate"], p["pln_before_gate"] * p["gate"],
                             rtol=1e-6)
  assert float(p["gate"].min()) > 0 and float(p["gate"].max()) < 1
  assert p["nm"].shape == (3, 2 * 3 * 3)       # the NM trunk: 2 channels x 3 x 3
