"""The benchmark scripts run and write their JSON (tiny sizes; no timing is
asserted: speed figures live in bench/README.md)."""
import glob
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow



def _run(script, *args):
  subprocess.run([sys.executable, os.path.join(REPO, "bench", script), *args],
                 check=True, cwd=REPO, capture_output=True, text=True)


# Every script with --out, and the positional arguments it needs before it
# gets that far (none are read before the refusal).
WRITERS = {os.path.basename(f): {"ab_revisions.py": ["HEAD"], "numerics_unchanged.py": ["HEAD"],
                                 "loss_curves.py": ["run_a", "run_b"]}.get(os.path.basename(f), [])
           for f in sorted(glob.glob(os.path.join(REPO, "bench", "*.py")))
           if '"--out"' in open(f).read()}


def test_every_benchmark_with_an_out_flag_is_listed():
  assert len(WRITERS) >= 11 and "cost.py" in WRITERS


@pytest.mark.parametrize("script", sorted(WRITERS))
def test_benchmark_refuses_an_existing_out_before_measuring(tmp_path, script):
  """A committed JSON is a record: a second run to the same path is a
  one-line error and the file keeps its bytes."""
  out = tmp_path / "kept"
  target = tmp_path / "kept.json" if script == "loss_curves.py" else out   # --out is a prefix there
  target.write_text('{"figure": 1}\n')
  res = subprocess.run([sys.executable, os.path.join(REPO, "bench", script), *WRITERS[script],
                        "--out", str(out)], cwd=REPO, capture_output=True, text=True)
  assert res.returncode != 0
  assert res.stderr.strip().splitlines()[-1] == (
      f"{target} already exists: a benchmark's output is a record and is never replaced; "
      "give another --out. Nothing was measured.")
  assert target.read_text() == '{"figure": 1}\n'


def test_meta_step_benchmark_reports_the_floor(tmp_path):
  out = tmp_path / "meta_step.json"
  _run("meta_step.py", "--config", "smoke", "--variants", "second", "first", "dense-head",
       "--steps", "1", "--repeats", "1", "--matmul-n", "256", "--out", str(out))
  res = json.loads(out.read_text())
  assert res["matmul_flops_per_s"] > 0
  second, first, dense = res["rows"]
  assert second["analytic_flops_per_step"] > first["analytic_flops_per_step"] > 0
  assert (second["low_rank_head"], dense["low_rank_head"], dense["first_order"]) == (
      True, False, False)
  for r in res["rows"]:
    assert r["s_per_step"] > 0 and r["time_over_floor"] > 0
    assert r["floor_s_per_step"] == r["analytic_flops_per_step"] / res["matmul_flops_per_s"]


def test_seeds_benchmark_runs_one_program_and_separate_processes(tmp_path):
  out = tmp_path / "seeds.json"
  _run("seeds.py", "--config", "smoke", "--method", "pretrain", "--seeds", "1", "2",
       "--steps", "1", "--repeats", "1", "--set", "model.conv_impl=xla", "--out", str(out))
  res = json.loads(out.read_text())
  assert res["set"] == ["model.conv_impl=xla"]
  assert [(r["seeds"], r["how"]) for r in res["rows"]] == [
      (1, "one program"), (2, "one program"), (2, "separate processes")]
  for r in res["rows"]:
    assert r["trajectories_per_s"] > 0 and r["device_bytes"] > 0
  assert res["rows"][0]["over_one_seed"] == 1.0


def test_cost_benchmark_times_each_method_and_scales_to_its_run(tmp_path):
  out = tmp_path / "cost.json"
  _run("cost.py", "--config", "smoke", "--cases", "pretrain", "asb", "--steps", "1",
       "--repeats", "1", "--out", str(out))
  res = json.loads(out.read_text())
  assert [r["case"] for r in res["rows"]] == ["pretrain", "asb"]
  for r in res["rows"]:
    assert r["s_per_step"] > 0 and r["flops_per_step"] > 0
    assert r["run_hours"] == r["run_steps"] * r["s_per_step"] / 3600
    assert r["run_flops"] == r["run_steps"] * r["flops_per_step"]
  assert [r["run_steps"] for r in res["rows"]] == [2000, 9000]
  assert res["matmul_flops_per_s"] > 0 and res["provenance"]["command"].startswith("python")


def test_meta_test_benchmark_counts_stream_steps(tmp_path):
  out = tmp_path / "meta_test.json"
  _run("meta_test.py", "--classes", "3", "--class-pool", "5", "--runs", "2", "--lrs", "2",
       "--out", str(out))
  row = json.loads(out.read_text())["rows"][0]
  assert row["stream_steps"] == 2 * 2 * 15 * 3
  assert row["xla_temp_bytes"] > 0 and 0 <= row["test_acc_mean"] <= 1
  assert (row["path"], row["network"]) == ("features", "anml/head")
  out = tmp_path / "meta_test_network.json"
  _run("meta_test.py", "--classes", "3", "--class-pool", "5", "--runs", "1", "--lrs", "1",
       "--path", "network", "--out", str(out))
  row = json.loads(out.read_text())["rows"][0]
  assert (row["path"], row["network"], row["stream_steps"]) == ("network", "anml", 45)


def test_profile_groups_xla_ops_by_kind(tmp_path):
  out = tmp_path / "profile.json"
  _run("profile_step.py", "--config", "smoke", "--steps", "1", "--out", str(out))
  rows = json.loads(out.read_text())["rows"]
  assert rows and abs(sum(r["share"] for r in rows) - 1) < 1e-6
  assert not any(re.fullmatch(r".*\.\d+", r["op_kind"]) for r in rows)   # suffixes grouped


def test_ab_revisions_times_two_revisions_in_one_process(tmp_path):
  out = tmp_path / "ab.json"
  _run("ab_revisions.py", "HEAD", "--config", "smoke", "--cases", "first_order=True",
       "--rounds", "2", "--out", str(out))
  res = json.loads(out.read_text())
  (row,) = res["rows"]
  assert row["case"] == "first_order=True" and res["config"] == "smoke"
  assert len(row["base_s"]) == len(row["tree_s"]) == len(row["base_over_tree"]) == 2
  assert min(row["base_s"] + row["tree_s"]) > 0
  if not res["tree_dirty"]:   # anml_jax/ unchanged since HEAD: the same program
    assert row["base_loss"] == pytest.approx(row["tree_loss"], rel=1e-6)


def test_first_block_numerics_compares_both_conv_paths_with_float64(tmp_path):
  out = tmp_path / "numerics.json"
  _run("first_block_numerics.py", "--synthetic", "--classes", "2", "--per-class", "2",
       "--out", str(out))
  rows = json.loads(out.read_text())["rows"]
  assert {(r["output"], r["conv_impl"]) for r in rows} == {
      (o, i) for o in ("gate_logits", "logits") for i in ("xla", "im2col")}
  for r in rows:
    assert 0 <= r["float32_max_abs_err"] <= 1e-4 * max(r["max_abs_value"], 1.0)


def test_loss_curves_compares_two_runs_step_by_step(tmp_path):
  runs = []
  for name, losses in (("a", (4.0, 2.0)), ("b", (4.0, 2.5))):
    d = tmp_path / name
    d.mkdir()
    d.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"step": 10 * (i + 1), "loss": v, "inner_loss": 1.0, "accuracy": 0.5}) + "\n"
        for i, v in enumerate(losses)))
    runs.append(str(d))
  _run("loss_curves.py", *runs, "--out", str(tmp_path / "cmp"))
  res = json.loads((tmp_path / "cmp.json").read_text())
  assert [r["step"] for r in res["rows"]] == [10, 20]
  assert res["rows"][1]["loss"] == [2.0, 2.5]
  assert res["max_rel_diff"] == {"loss": 0.2, "inner_loss": 0.0, "accuracy": 0.0}
  assert (tmp_path / "cmp.png").stat().st_size > 0


def test_heads_benchmark_reports_every_head(tmp_path):
  out = tmp_path / "heads.json"
  _run("heads.py", "--classes", "4", "--dim", "8", "--runs", "2", "--reps", "1",
       "--out", str(out))
  res = json.loads(out.read_text())
  assert sorted(res["heads"]) == ["gaussian", "prototype", "prototype_cosine", "ridge"]
  assert res["heads"]["ridge"]["state_bytes"] == 4 * (4 + 4 * 8 + 8 * 8)
  for row in res["heads"].values():
    assert row["s_per_image_block1"] > 0 and row["evaluation_s"] > 0


def test_view_features_benchmark_reports_the_output_and_peak_memory(tmp_path):
  out = tmp_path / "views.json"
  _run("view_features.py", "--classes", "2", "--views", "5", "--out", str(out))
  res = json.loads(out.read_text())
  assert res["output_bytes"] == 4 * 2 * 20 * 5 * 2304
  assert res["host_peak_bytes"] >= res["host_peak_before_bytes"] > 0 and res["seconds"] > 0
  assert res["code"].startswith(REPO)


def test_training_step_flops_count_each_method_s_images():
  sys.path.insert(0, os.path.join(REPO, "bench"))
  try:
    import flops
  finally:
    sys.path.remove(os.path.join(REPO, "bench"))
  from anml_jax import configs
  nm, pln = flops.anml_image_flops()
  asb = configs.get_config("default", "asb")
  assert flops.training_step_flops(asb) == 3 * (20 + 64 + 20) * pln      # ungated: no NM
  asb.model.gate = True
  assert flops.training_step_flops(asb) == 3 * 104 * (pln + nm)
  pre = configs.get_config("default", "pretrain")
  assert flops.training_step_flops(pre) == 3 * 64 * (pln + nm)
  anml = configs.get_config("default", "anml")
  assert flops.training_step_flops(anml) == flops.meta_step_flops(anml)["per_meta_step"]
  oml = configs.get_config("default", "oml")
  assert flops.training_step_flops(oml) == flops.meta_step_flops(oml)["per_meta_step"]
  head = configs.get_config("default", "streamhead")
  assert flops.training_step_flops(head) == 3 * 30 * 7 * (nm + flops.trunk_flops(256))
  head.model.gate = False
  assert flops.training_step_flops(head) == 3 * 30 * 7 * flops.trunk_flops(256)   # no NM
  with pytest.raises(ValueError, match="no analytic FLOPs for method 'scratch'"):
    flops.training_step_flops(configs.get_config("default", "scratch"))


def test_oml_representation_flops_match_xla_s_count():
  """The analytic count of OML's RLN (6 valid convs, strides 1,1,1,2,1,2)
  against XLA's cost analysis of the compiled forward pass of one image."""
  sys.path.insert(0, os.path.join(REPO, "bench"))
  try:
    import flops
  finally:
    sys.path.remove(os.path.join(REPO, "bench"))
  from anml_jax import models
  net = models.make_oml()
  params = net.init(jax.random.key(0))
  x = jnp.zeros((1, 28, 28, 1))
  cost = jax.jit(net.context).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  rln, _ = flops.oml_image_flops()
  assert cost["flops"] == pytest.approx(rln, rel=0.02)
