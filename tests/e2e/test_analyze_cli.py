"""Representation analyses: known answers on synthetic cases, ANML's probes,
and a smoke run of analyze.py."""
import json
import os

import numpy as np

import analyze
import train
from anml_jax.checkpointing import export_params
from tests.conftest import smoke_args


def test_analyze_py_smoke_writes_every_output(tmp_path, smoke_run):
  anml, oml = smoke_run, str(tmp_path / "oml")
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
