"""The results store: every record indexed, cells chosen by the stated
rules, and the committed tables equal to what the records generate."""
import glob
import json
import os
import re

import numpy as np
import pytest

import report
from anml_jax.results import store
from anml_jax.results.store import Entry, Spec

RESULTS = os.path.join(report.REPO, "results")


def _record(method="anml", seed=9, n_rows=((10, 0.8),), search_runs=10, runs=10,
            lrs=(1e-3,) * 14, oracle=False, **protocol):
  return {"method": method, "finetune": ["pln/head"], "oracle": oracle,
          "checkpoint_step": 100, "model_config": {"seed": seed, "first_order": False},
          "protocol": {"search_runs": search_runs, "runs": runs, "lrs": list(lrs), **protocol},
          "per_n": [{"classes": n, "test_mean": m, "test_std": 0.01} for n, m in n_rows]}


SPEC = Spec("anml", (("method", "anml"), ("oracle", False)))


def test_every_committed_record_is_indexed_with_its_numbers():
  files = glob.glob(os.path.join(RESULTS, "**", "results.json"), recursive=True)
  entries = store.load(RESULTS)
  assert len(entries) == len(files) >= 38
  for e in entries:
    raw = json.load(open(os.path.join(RESULTS, e.path, "results.json")))
    assert e.record == raw
    assert all(np.isfinite(r["test_mean"]) for r in e.record["per_n"])


def test_the_committed_tables_are_the_generated_ones(capsys):
  assert report.main(["--check"]) == 0, capsys.readouterr().err


def test_the_fullest_protocol_fills_a_cell_and_seeds_are_averaged():
  quick = Entry("a", _record(n_rows=((10, 0.5), (50, 0.4)), search_runs=1))
  full = Entry("b", _record(n_rows=((10, 0.7),), search_runs=10))
  other_seed = Entry("c", _record(seed=10, n_rows=((10, 0.8),)))
  oracle = Entry("d", _record(n_rows=((10, 0.99),), oracle=True))
  entries = [quick, full, other_seed, oracle]
  c = store.cell(entries, SPEC, 10)
  assert c.seeds == 2 and [e.path for e in c.entries] == ["b", "c"]
  assert c.mean == pytest.approx(75.0) and c.std == pytest.approx(np.std([70, 80], ddof=1))
  assert store.seed_means(entries, SPEC, 10) == pytest.approx([70.0, 80.0])
  one = store.cell(entries, SPEC, 50)                 # only the quick record has N = 50
  assert one.seeds == 1 and one.mean == pytest.approx(40.0) and one.std == pytest.approx(1.0)
  assert store.cell(entries, SPEC, 600) is None
  text = store.table(entries, [SPEC], (10, 50, 600))
  assert "| anml | 75.0 ± 7.1 (2 seeds) | 40.0 ± 1.0 * |  |" in text
  assert "\\* lr searched on 1 run instead of 10" in text
  few = Entry("e", _record(seed=11, n_rows=((600, 0.6),), search_runs=1, runs=2))
  assert "| 60.0 ± 1.0 * (2 runs) |" in store.table([few], [SPEC], (600,))
  # Seeds measured on different protocols: the marks are the least one's,
  # whichever seed comes first.
  searched = Entry("f", _record(seed=9, n_rows=((600, 0.7),), search_runs=10))
  mixed = store.cell([searched, few], SPEC, 600)
  assert (mixed.seeds, mixed.search_runs, mixed.runs) == (2, 1, 2)
  assert "| 65.0 ± 7.1 * (2 runs) (2 seeds) |" in store.table([searched, few], [SPEC], (600,))
  # The README's form: the ± only where it is the spread over training seeds.
  text = store.table(entries, [SPEC], (10, 50), std="seeds")
  assert "| anml | 75.0 ± 7.1 (2 seeds) | 40.0 * |" in text
  with pytest.raises(ValueError, match="std='none'"):
    store.table(entries, [SPEC], (10,), std="none")


def test_welch_tests_only_several_seeds():
  assert store.welch([70.0], [60.0]) == {"diff": 10.0, "p": None, "seeds": (1, 1)}
  far = store.welch([70.0, 70.5, 69.5], [60.0, 60.4, 59.6])
  near = store.welch([70.0, 72.0, 68.0], [70.5, 68.5, 71.0])
  assert far["p"] < 1e-3 < 0.5 < near["p"]


def test_blocks_are_replaced_between_their_markers_only():
  text = "a\n<!-- t:start -->\nold\n<!-- t:end -->\nb"
  new = store.replace_block(text, "t", "new table")
  assert new == "a\n<!-- t:start -->\nnew table\n<!-- t:end -->\nb"
  assert store.block(new, "t") == "new table"
  with pytest.raises(ValueError, match="no <!-- u:start -->"):
    store.replace_block(text, "u", "x")


def test_inline_figures_are_filled_from_their_values_and_unknown_ones_refused():
  text = "ANML: <!-- fig a -->old<!-- /fig -->, OML <!-- fig b --><!-- /fig -->."
  assert store.figure_names(text) == ["a", "b"]
  new = store.fill_figures(text, {"a": "66.0 %", "b": "24.2 %", "c": "unused"})
  assert new == "ANML: <!-- fig a -->66.0 %<!-- /fig -->, OML <!-- fig b -->24.2 %<!-- /fig -->."
  with pytest.raises(ValueError, match="inline figure.s. b are not defined"):
    store.fill_figures(text, {"a": "1"})
  hand = store.outside_generated("x <!-- t:start -->\n| 1.5 % |\n<!-- t:end --> y " + new)
  assert hand == "x  y ANML: , OML ."


def test_a_figure_from_the_records_follows_its_record():
  """The inline figure of a row is its table cell; published ones are the
  papers'; a row without a record says so."""
  row, n = report.FIGURES["anml-600"]
  spec = report._main(row)
  rec = _record(n_rows=((600, 0.5),), learner="adam", split="drawer")
  rec.update(checkpoint_step=20000)
  rec["model_config"].update(zap="trajectory")
  assert store.matches(rec, spec)
  values = report.figure_values([Entry("x", rec)])
  assert values["anml-600"] == "50.0 ± 1.0 %"
  assert values["oml-600"] == "(not measured)"
  assert values["paper-anml-600"] == "63.8 %"


HAND_CHECKED = ("README.md", "docs/findings.md", "results/README.md")


@pytest.mark.parametrize("doc", HAND_CHECKED)
def test_no_measured_figure_is_typed_by_hand(doc):
  """Outside the generated tables and inline figures, these files quote no
  accuracy (a decimal percentage or a ± spread): every such figure comes
  from the records through report.py."""
  hand = store.outside_generated(open(os.path.join(report.REPO, doc)).read())
  typed = re.findall(r"\d+\.\d+ ?%|± ?\d", hand)
  assert not typed, f"{doc} types figures by hand: {typed}; use <!-- fig NAME --> (report.FIGURES)"


def test_runs_test_pairs_only_records_that_drew_the_same_classes():
  prot = {"seed": 222, "class_pool": 650, "search_pool": 963, "runs": 4, "search_runs": 1,
          "schedule": [100, 600]}
  rec = lambda runs, **p: {"protocol": {**prot, **p},
                           "per_n": [{"classes": 600, "test_runs": runs}]}
  a = rec([0.60, 0.62, 0.64, 0.66])
  b = rec([0.59, 0.60, 0.63, 0.64])
  r = store.runs_test(a, b, 600)
  assert r["test"] == "paired" and abs(r["diff"] - 1.5) < 1e-9
  np.testing.assert_allclose(r["se"], np.std([1, 2, 1, 2], ddof=1) / 2)
  # another schedule before N = 600 draws other classes: Welch
  assert store.runs_test(a, rec(b["per_n"][0]["test_runs"], schedule=[600]), 600)["test"] == "welch"
  assert store.runs_test(a, rec(b["per_n"][0]["test_runs"], search_runs=10), 600)["test"] == "welch"
  with pytest.raises(ValueError, match="both records need N = 100"):
    store.runs_test(a, b, 100)


def test_a_record_with_views_fills_only_rows_that_name_them():
  plain = Entry("p", _record(n_rows=((600, 0.7),), learner="gaussian"))
  views = Entry("v", _record(n_rows=((600, 0.8),), learner="gaussian", views=9))
  spec = Spec("g", SPEC.match + (("learner", "gaussian"),))
  assert [e.path for e in store.cell([views, plain], spec, 600).entries] == ["p"]
  named = Spec("g9", spec.match + (("views", 9),))
  assert [e.path for e in store.cell([plain, views], named, 600).entries] == ["v"]
  # the cost table's best head names the views it was scored with
  for e in (plain, views):
    e.record.update(checkpoint_step=20000)
    e.record["model_config"].update(zap="trajectory")
  best = next(line for line in report.cost_table([plain, views], None).splitlines()
              if line.startswith("| ANML, second order"))
  assert best.endswith("| 80.0 ± 1.0 (shared-covariance Gaussian, features, "
                       "9 views (one-pixel moves)) |")


def test_a_record_of_shifted_pretraining_fills_only_rows_that_name_it():
  plain = Entry("p", _record(n_rows=((600, 0.7),)))
  moved = Entry("m", _record(n_rows=((600, 0.8),)))
  moved.record["model_config"].update(shift=2)
  assert store.describe(moved.record)["shift"] == 2
  assert store.describe(plain.record)["shift"] == 0          # older records: none
  assert [e.path for e in store.cell([moved, plain], SPEC, 600).entries] == ["p"]
  named = Spec("s", SPEC.match + (("shift", 2),))
  assert [e.path for e in store.cell([plain, moved], named, 600).entries] == ["m"]


def test_a_set_of_checkpoints_joins_their_seeds_and_leaves_out_a_record_without_one():
  runs = [Entry(f"s{seed}", _record(seed=seed, n_rows=((600, m),)))
          for seed, m in ((9, 0.70), (10, 0.72), (11, 0.74))]
  for e, sha in zip(runs, ("a", "b", "b")):
    e.record["checkpoint_sha256"] = sha
  older = Entry("gpu", _record(seed=9, n_rows=((600, 0.5),), search_runs=20))  # no sha256
  spec = Spec("cpu", SPEC.match + (("checkpoint_sha256", frozenset({"a", "b"})),))
  c = store.cell([older, *runs], spec, 600)
  assert [e.path for e in c.entries] == ["s9", "s10", "s11"]
  np.testing.assert_allclose([c.mean, c.std], [72.0, 2.0], rtol=1e-6)
  assert [e.path for e in store.cell([older, *runs], SPEC, 600).entries] == ["gpu", "s10", "s11"]


def test_the_cost_table_puts_each_method_s_cost_beside_its_accuracies():
  def rec(learner="adam", features="head_input", mean=0.6, **model):
    r = _record(n_rows=((600, mean),), learner=learner, features=features)
    r["checkpoint_step"] = 20000
    r["model_config"].update(zap="trajectory", **model)
    return Entry(f"{learner}_{features}", r)
  entries = [rec(), rec("prototype", mean=0.7), rec("gaussian", "context", mean=0.75),
             rec("gaussian", first_order=True, mean=0.9)]   # another method's head
  bench = {"rows": [
      {"case": "anml", "run_steps": 20000, "flops_per_step": 84e9, "run_flops": 1.68e15,
       "s_per_step": 1.2, "run_hours": 20000 * 1.2 / 3600},
      {"case": "streamhead", "run_steps": 600, "flops_per_step": 50e9, "run_flops": 3e13,
       "s_per_step": 3.0, "run_hours": 0.5}],
      "provenance": {"command": "python bench/cost.py"}, "cpu": "a CPU", "cpu_count": 2,
      "matmul_flops_per_s": 7e10}
  text = report.cost_table(entries, bench)
  anml = next(line for line in text.splitlines() if line.startswith("| ANML, second order"))
  assert anml == ("| ANML, second order, its reset | 20,000 | 84.0 | 1.680 | 1.20 | 6.7 | "
                  "60.0 ± 1.0 | 75.0 ± 1.0 (shared-covariance Gaussian, NM output) |")
  stream = next(line for line in text.splitlines() if line.startswith("| streamhead"))
  assert "| 600 + ANML's | 50.0 | 1.710 | 3.00 | 7.2 |" in stream     # ANML's run and its own
  asb = next(line for line in text.splitlines() if line.startswith("| ASB, zapping"))
  assert asb == "| ASB, zapping |" + "  |" * 7                    # no bench case, no record
  assert "`python bench/cost.py` on a CPU (2 cores, dense float32 matmul 70 GFLOP/s)" in text


def test_oml_s_two_layers_fill_their_own_heads_rows_and_keep_their_names():
  def rec(features, mean):
    r = _record(method="oml", n_rows=((600, mean),), learner="gaussian", features=features)
    r.update(checkpoint_step=20000)
    r["model_config"].update(zap="trajectory")
    return Entry(features, r)
  entries = [rec("head_input", 0.70), rec("context", 0.80)]
  heads = report.blocks(entries)[("docs/findings.md", "heads-table")]
  rows = [line.split(" |")[0] for line in heads.splitlines() if line.startswith("| OML")]
  assert rows == ["| OML: the PLN's hidden layer: shared-covariance Gaussian",
                  "| OML: the RLN's output: shared-covariance Gaussian"]
  assert "Adam" not in heads                 # OML's Adam rows (PLN re-learnt) are the main table's
  oml = next(line for line in report.cost_table(entries, None).splitlines()
             if line.startswith("| OML"))
  assert oml.endswith("| 80.0 ± 1.0 (shared-covariance Gaussian, RLN output) |")


def test_the_comparisons_table_tests_over_seeds_only_with_several_a_side():
  def rec(seed, zap, mean, runs):
    r = _record(seed=seed, n_rows=((600, mean),), learner="prototype", features="head_input")
    r["method"], r["checkpoint_step"] = "pretrain", 2000
    r["model_config"].update(zap=zap, **({"zap_scale": "row"} if zap == "epoch" else {}))
    r["per_n"][0]["test_runs"] = runs
    return Entry(f"{zap}_{seed}", r)
  zapped = [rec(9, "epoch", 0.71, [0.70, 0.71, 0.72]), rec(10, "epoch", 0.72, [0.71, 0.72, 0.73])]
  plain = [rec(9, "none", 0.63, [0.62, 0.64, 0.63]), rec(10, "none", 0.64, [0.63, 0.64, 0.65])]
  text = report.comparisons_table(zapped[:1] + plain[:1])
  row = next(line for line in text.splitlines() if "zapping every epoch (row std): nearest" in line)
  assert ("| 71.0 | 63.0 | +8.0 | 1 / 1 | untested: fewer than 2 seeds a side "
          "| seed 9 / 9, paired: +8.00 ± 0.58") in row
  # two seeds against one: untested over seeds; the runs test takes the seed both have
  other = rec(10, "none", 0.64, [0.63, 0.65, 0.64])
  text = report.comparisons_table(zapped + [other])
  row = next(line for line in text.splitlines() if "zapping every epoch (row std): nearest" in line)
  assert ("| 71.5 | 64.0 | +7.5 | 2 / 1 | untested: fewer than 2 seeds a side "
          "| seed 10 / 10, paired: +8.00 ± 0.58") in row
  text = report.comparisons_table(zapped + plain)
  row = next(line for line in text.splitlines() if "zapping every epoch (row std): nearest" in line)
  p = store.welch([71.0, 72.0], [63.0, 64.0])["p"]
  assert f"| 71.5 | 63.5 | +8.0 | 2 / 2 | Welch p = {p:.2g} |" in row
  assert "ASB" not in text                         # pairs without records are left out
  # pretraining on turned classes is another row: it never fills the unturned one
  turned = rec(9, "epoch", 0.80, [0.79, 0.80, 0.81])
  turned.record["model_config"].update(rotations=4)
  assert store.describe(turned.record)["rotations"] == 4
  assert store.describe(zapped[0].record)["rotations"] == 1       # older records: none
  text = report.comparisons_table([turned] + zapped[:1] + plain[:1])
  row = next(line for line in text.splitlines() if "zapping every epoch (row std): nearest" in line)
  assert "| 71.0 | 63.0 |" in row
