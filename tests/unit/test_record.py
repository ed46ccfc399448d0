"""A results record's schema, identity and version, read without JAX."""
import json
import os
import subprocess
import sys

import pytest

import report
from anml_jax import configs, methods
from anml_jax.results import record, store
from tests.conftest import REPO


def test_the_results_store_imports_without_jax():
  code = ("import sys, anml_jax.results.store, anml_jax.reporting; print(sorted(m for m in "
          "('jax', 'flax', 'optax', 'ml_collections') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout
  assert out.strip() == "[]"


def test_what_the_record_module_knows_of_the_code_agrees_with_it():
  assert set(record.TRAJECTORY_ZAP_METHODS) == {
      m.name for m in methods.REGISTRY.values() if "trajectory" in m.zaps}
  assert store.PAPER_LRS == len(configs.PAPER_LRS)


@pytest.mark.parametrize("method, reset, zap", [
    ("anml", True, "trajectory"), ("anml", False, "none"), ("oml", True, "trajectory"),
    ("scratch", True, "none"), ("pretrain", False, "none")])
def test_an_old_record_s_reset_reads_as_the_config_s_zap(method, reset, zap):
  model = {"method": method, "reset_head_rows": reset, "seed": 9}
  rec = {"method": method, "finetune": ["pln/head"], "model_config": model,
         "checkpoint_step": 5}
  assert record.describe(rec)["zap"] == zap == configs.upgrade(model)["zap"]


def test_a_newer_schema_version_is_refused_in_one_line(tmp_path, capsys):
  good = {"method": "scratch", "finetune": ["nm", "pln"], "protocol": {}, "per_n": []}
  assert record.version(good) == 1 and record.version({**good, "schema": 2}) == 2
  folder = tmp_path / "results" / "future"
  folder.mkdir(parents=True)
  (folder / "results.json").write_text(json.dumps({**good, "schema": 99}))
  with pytest.raises(ValueError, match="schema version 99; this anml-jax reads versions 1 to 2"):
    store.load(str(tmp_path / "results"))
  assert report.main([f"--results={tmp_path / 'results'}", "--check"]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "future/results.json has schema version 99" in err[0]


def test_the_run_id_names_the_checkpoint_and_protocol():
  a = {"method": "anml", "finetune": ["pln/head"], "protocol": {"runs": 10},
       "checkpoint_sha256": "ab", "per_n": [{"classes": 10}]}
  assert record.run_id(a) == record.run_id({**a, "per_n": []})      # more N: the same run
  assert record.run_id(a) != record.run_id({**a, "protocol": {"runs": 2}})
  assert len(record.run_id(a)) == 12


def test_every_committed_record_is_of_a_known_version():
  for e in store.load(os.path.join(REPO, "results")):
    assert record.version(e.record) in (1, 2)
