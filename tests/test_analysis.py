"""Representation analyses: known answers on synthetic cases, ANML's probes,
and a smoke run of analyze.py."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import analyze
import train
from anml_jax import analysis, gating
from anml_jax.checkpointing import export_params
from tests.conftest import smoke_args, tiny_anml


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


def test_analyze_py_smoke_writes_every_output(tmp_path):
  anml, oml = str(tmp_path / "anml"), str(tmp_path / "oml")
  assert train.main(["--workdir", anml, *smoke_args()]) == 0
  assert train.main(["--workdir", oml, *smoke_args("oml")]) == 0
  out = str(tmp_path / "an")
  # 4 classes in the t-SNE figure, not 10: t-SNE of 80 points, not 200 (seconds each)
  assert analyze.main(["--checkpoint", anml, "--oml_checkpoint", oml, "--out", out,
                       "--data_source=synthetic", "--tsne_classes=4"]) == 0
  for f in ("analysis.json", "sparsity.png", "tsne.png"):
    assert os.path.getsize(os.path.join(out, f)) > 0
  r = json.load(open(os.path.join(out, "analysis.json")))
  assert r["checkpoint_step"] == 6 and r["classes"] == 20 and r["knn"]["k"] == 5
  for k in ("pln_active_before_gate", "pln_active_after_gate", "oml_active"):
    assert 0 <= r["sparsity"][k] <= 1
  for k in ("dead_units_before_gate", "dead_units_after_gate", "oml_dead_units"):
    assert 0 <= r["sparsity"][k] <= 2304
  for k in ("pln_before_gate", "pln_after_gate", "nm", "random_init", "oml"):
    assert 0 <= r["knn"][k] <= 1
  assert "drawings 1-15" in r["knn"]["split"] and len(r["tsne_classes"]) == 4
  # an OML checkpoint alone, and a wrong --oml_checkpoint
  assert analyze.main(["--checkpoint", oml, "--out", str(tmp_path / "o"),
                       "--data_source=synthetic", "--tsne_classes=4"]) == 0
  r = json.load(open(os.path.join(tmp_path / "o", "analysis.json")))
  assert 0 <= r["knn"]["oml"] <= 1 and "oml_active" in r["sparsity"]
  assert analyze.main(["--checkpoint", anml, "--oml_checkpoint", anml, "--out",
                       str(tmp_path / "x"), "--data_source=synthetic"]) == 1
  assert r["provenance"]["command"].startswith("python")


def test_analyze_py_analyses_each_seed_and_never_replaces_a_record(tmp_path):
  run, out = str(tmp_path / "run"), str(tmp_path / "an")
  two_seeds = smoke_args(seed=3, seeds=2, steps=2, first_order=True)
  assert train.main(["--workdir", run, *two_seeds]) == 0
  flags = ["--data_source=synthetic", "--tsne_classes=4"]
  assert analyze.main(["--checkpoint", run, "--out", out, *flags]) == 0
  recs = {s: json.load(open(os.path.join(out, f"seed_{s}", "analysis.json"))) for s in (3, 4)}
  assert [r["training_seed"] for r in recs.values()] == [3, 4]
  # each seed's record is the analysis of that seed alone, exported
  npz = str(tmp_path / "seed_4.npz")
  export_params(run, npz, seed=4)
  assert analyze.main(["--checkpoint", npz, "--out", str(tmp_path / "one"), *flags]) == 0
  one = json.load(open(os.path.join(tmp_path, "one", "analysis.json")))
  for k in ("pln_active_before_gate", "nm_active", "gate_mean"):
    np.testing.assert_allclose(recs[4]["sparsity"][k], one["sparsity"][k], rtol=1e-5)
  assert abs(recs[3]["sparsity"]["gate_mean"] - recs[4]["sparsity"]["gate_mean"]) > 1e-4
  # a second analysis into the same folder is refused and changes nothing
  before = open(os.path.join(out, "seed_4", "analysis.json")).read()
  assert analyze.main(["--checkpoint", run, "--out", out, *flags]) == 1
  assert open(os.path.join(out, "seed_4", "analysis.json")).read() == before
