"""Reporting helpers: the binned forgetting curve and evaluation labels."""
from anml_jax import reporting


def test_binned_mean_groups_consecutive_classes_and_keeps_a_short_last_group():
  positions, means = reporting.binned_mean([1.0, 0.0, 1.0, 1.0, 0.4], 2)
  assert positions == [1.5, 3.5, 5.0]
  assert means == [0.5, 1.0, 0.4]


def test_label_names_method_steps_and_fine_tuned_groups():
  assert reporting.label({"method": "anml", "checkpoint_step": 2500,
                          "finetune": ["pln/head"]}) == "anml 2500 steps [pln/head]"
  assert reporting.label({"method": "scratch", "checkpoint_step": 0,
                          "finetune": ["nm", "pln"]}) == "scratch [nm+pln]"


def test_label_marks_an_lr_search_on_fewer_runs_than_the_final_evaluation():
  r = {"method": "anml", "checkpoint_step": 9, "finetune": ["pln/head"], "oracle": True,
       "protocol": {"runs": 10, "search_runs": 1}}
  assert reporting.label(r) == "anml oracle 9 steps [pln/head] (lr searched on 1 run)"
  r["protocol"] = {"runs": 10, "search_runs": 10}
  assert reporting.label(r) == "anml oracle 9 steps [pln/head]"


def test_label_tells_a_first_order_meta_training_apart():
  r = {"method": "anml", "checkpoint_step": 20000, "finetune": ["pln/head"],
       "model_config": {"first_order": True}}
  assert reporting.label(r) == "anml first order 20000 steps [pln/head]"
  r["model_config"]["first_order"] = False
  assert reporting.label(r) == "anml 20000 steps [pln/head]"


def test_forgetting_table_averages_stretches_of_the_stream():
  r = {"method": "anml", "checkpoint_step": 5, "finetune": ["pln/head"],
       "forgetting": {"test_per_class_mean": [1.0, 1.0, 0.5, 0.0],
                      "train_per_class_mean": [1.0, 1.0, 1.0, 0.5]}}
  lines = reporting.forgetting_table([r], parts=2).splitlines()
  assert lines[2] == "| anml 5 steps [pln/head] | 4 | test | 100, 25 |"
  assert lines[3] == "| anml 5 steps [pln/head] | 4 | train | 100, 75 |"


def test_comparison_table_puts_ours_beside_the_published_figures_at_shared_ns():
  r = {"method": "anml", "checkpoint_step": 7, "finetune": ["pln/head"],
       "per_n": [{"classes": 10, "test_mean": 0.5}, {"classes": 600, "test_mean": 0.25},
                 {"classes": 3, "test_mean": 1.0}]}
  pub = {"paper": {600: 0.638}, "later": {10: 0.9, 600: 0.65}, "other": {5: 0.1}}
  lines = reporting.comparison_table([r], pub).splitlines()
  assert lines[0] == "| classes | anml 7 steps [pln/head] | paper | later |"
  assert lines[2:] == ["| 10 | 50.0 |  | 90.0 |", "| 600 | 25.0 | 63.8 | 65.0 |"]
  assert reporting.comparison_table([{**r, "per_n": r["per_n"][2:]}], pub) == ""


def test_join_parts_merges_one_evaluation_split_over_schedules_and_nothing_else(tmp_path):
  def part(ns, checkpoint="a.npz"):
    return {"method": "anml", "checkpoint_step": 7, "finetune": ["pln/head"], "oracle": True,
            "checkpoint": checkpoint, "protocol": {"runs": 10, "search_runs": 1, "schedule": ns},
            "per_n": [{"classes": n, "test_mean": n / 1000} for n in ns],
            "forgetting": {"classes": max(ns)}, "seconds": 1.0}
  first, second, other = part([10, 600]), part([50]), part([50], checkpoint="b.npz")
  (joined,) = reporting.join_parts([first, second])
  assert [row["classes"] for row in joined["per_n"]] == [10, 50, 600]
  assert joined["forgetting"] == {"classes": 600} and joined["seconds"] == 2.0
  kept = reporting.join_parts([first, other, {**second, "oracle": False}])
  assert [len(r["per_n"]) for r in kept] == [2, 1, 1]   # another checkpoint; not an oracle
  (tmp_path / "a.npz").write_bytes(b"x")
  (tmp_path / "link").symlink_to(tmp_path)
  same = [part([10], str(tmp_path / "a.npz")), part([50], str(tmp_path / "link" / "a.npz"))]
  assert len(reporting.join_parts(same)) == 1   # one file through a symlink
  other_grid = {**part([200]), "protocol": {**second["protocol"], "lrs": [1e-5]}}
  kept = reporting.join_parts([first, other_grid, second])
  assert [[row["classes"] for row in r["per_n"]] for r in kept] == [[10, 50, 600], [200]]
