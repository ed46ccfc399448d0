"""evaluate.py as a user runs it: outputs, refusals, validation streams."""
import json
import os

import evaluate
import train
from anml_jax.results import record, store
from tests.conftest import CONFIGS, smoke_args

EVAL_SMOKE = f"--eval_config={CONFIGS}/eval.py:smoke"


def test_evaluate_py_smoke_writes_all_outputs(tmp_path, smoke_run):
  run = smoke_run
  out = str(tmp_path / "ev")
  ev = [EVAL_SMOKE, "--data_source=synthetic"]
  assert evaluate.main(["--checkpoint", run, "--out", out, *ev]) == 0
  for f in ("results.json", "results.csv", "table.md", "accuracy_vs_classes.png",
            "forgetting.png"):
    assert os.path.getsize(os.path.join(out, f)) > 0
  r = json.load(open(os.path.join(out, "results.json")))
  assert [row["classes"] for row in r["per_n"]] == [3, 5]
  assert len(r["per_n"][0]["test_runs"]) == 2
  assert r["finetune"] == ["pln/head"]          # ANML re-learns its classifier
  step = r["checkpoint_step"]
  assert step > 0 and f"| anml {step} steps [pln/head] | 3 |" in open(
      os.path.join(out, "table.md")).read()
  assert len(r["forgetting"]["test_per_class_mean"]) == 5
  assert r["provenance"]["command"].endswith(f"--checkpoint {run} --out {out} {EVAL_SMOKE} "
                                             "--data_source=synthetic")
  assert evaluate.main(["--checkpoint", run, "--method", "oml", "--out", out, *ev]) == 1
  assert evaluate.main([f"--compare={out},{out}", "--out", str(tmp_path / "cmp")]) == 0
  # the same checkpoint evaluated for N=3,5 and then N=7: --merge joins them
  more = str(tmp_path / "ev7")
  assert evaluate.main(["--checkpoint", run, "--out", more, *ev,
                        "--eval_config.schedule=(7,)"]) == 0
  merged = str(tmp_path / "merged")
  assert evaluate.main([f"--merge={more},{out}", "--out", merged]) == 0
  m = json.load(open(os.path.join(merged, "results.json")))
  assert [row["classes"] for row in m["per_n"]] == [3, 5, 7]
  assert m["protocol"]["schedule"] == [3, 5, 7]
  assert len(m["forgetting"]["test_per_class_mean"]) == 7
  assert evaluate.main([f"--merge={out},{out}", "--out", merged]) == 1   # N twice
  other = str(tmp_path / "ev_lr")
  assert evaluate.main(["--checkpoint", run, "--out", other, *ev,
                        "--eval_config.schedule=(7,)", "--eval_config.lrs=(0.01,)"]) == 0
  assert evaluate.main([f"--merge={other},{out}", "--out", merged]) == 1  # protocols differ
  oracle = str(tmp_path / "oracle")
  assert evaluate.main(["--checkpoint", run, "--out", oracle, *ev,
                        "--eval_config.schedule=(3,)", "--eval_config.oracle"]) == 0
  assert json.load(open(os.path.join(oracle, "results.json")))["oracle"] is True
  assert f"| anml oracle {step} steps [pln/head] | 3 |" in open(
      os.path.join(oracle, "table.md")).read()
  assert evaluate.main([f"--merge={oracle},{out}", "--out", merged]) == 1  # oracle differs
  assert evaluate.main([f"--compare={out}", "--eval_config.oracle", "--out", merged]) == 1
  assert evaluate.main(["--checkpoint", run, f"--compare={out}", "--out", merged]) == 1


def test_evaluate_py_scratch_and_bad_protocols(tmp_path, capsys):
  out = str(tmp_path / "scratch")
  base = [f"--config={CONFIGS}/scratch.py:smoke", "--out", out, EVAL_SMOKE,
          "--data_source=synthetic", "--eval_config.schedule=(3,)"]
  assert evaluate.main(base) == 0
  r = json.load(open(os.path.join(out, "results.json")))
  assert r["method"] == "scratch" and r["finetune"] == ["nm", "pln"]
  assert r["checkpoint_step"] == 0 and r["model_config"]["model"]["pln_channels"] == 16
  capsys.readouterr()
  for flag, message in (("--eval_config.lrs=(0.0,)", "lrs=(0.0,) must list positive"),
                        ("--eval_config.train_per_class=20", "train_per_class=20"),
                        ("--eval_config.schedule=(25,)", "only 20 evaluation"),
                        ("--eval_config.runz=3", "no such config field: 'runz'")):
    fresh = [a if a != out else out + "_bad" for a in base]   # out holds a record
    assert evaluate.main([*fresh, flag]) == 1
    assert message in capsys.readouterr().err
  assert evaluate.main([f"--config={CONFIGS}/anml.py:smoke", "--out", out + "2",
                        EVAL_SMOKE, "--data_source=synthetic"]) == 1
  assert "evaluate a run of it with --checkpoint" in capsys.readouterr().err


def test_validation_streams_learn_the_alphabets_the_run_held_out(tmp_path, capsys):
  """A run trained without the last synthetic 'alphabet' (classes 25-29) is
  validated on exactly those; its record never fills a meta-test row; a run
  that held nothing out cannot be validated."""
  held = ("synthetic5",)
  run = str(tmp_path / "run")
  assert train.main(["--workdir", run, *smoke_args(num_train_classes=25, steps=2),
                     f"--config.validation_alphabets={held!r}"]) == 0
  out = str(tmp_path / "val")
  assert evaluate.main(["--checkpoint", run, "--out", out, EVAL_SMOKE, "--data_source=synthetic",
                        "--eval_config.stream_classes=validation",
                        "--eval_config.schedule=(2,)", "--eval_config.learner=prototype"]) == 0
  r = json.load(open(os.path.join(out, "results.json")))
  assert r["protocol"]["stream_classes"] == "validation"
  assert tuple(r["model_config"]["validation_alphabets"]) == held
  assert r["protocol"]["class_pool"] == 5 and r["protocol"]["search_pool"] == 25
  assert record.describe(r)["stream_classes"] == "validation"
  spec = store.Spec("any prototype row", (("learner", "prototype"),))
  assert not store.matches(r, spec)                  # validation fills no meta-test row
  assert store.matches(r, spec._replace(match=spec.match + (("stream_classes", "validation"),)))
  assert evaluate.main(["--config", f"{CONFIGS}/scratch.py:smoke", "--out", str(tmp_path / "x"),
                        EVAL_SMOKE, "--data_source=synthetic",
                        "--eval_config.stream_classes=validation"]) == 1
  assert "none is left to validate on" in capsys.readouterr().err
