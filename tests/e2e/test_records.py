"""Nothing already saved is lost: records are never replaced, interrupted
work resumes, and bad files are one-line errors naming them."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import analyze
import evaluate
import train
from anml_jax import checkpointing, cli, provenance, reporting
from tests.conftest import CONFIGS, REPO, SYNTHETIC, smoke_args

SCRATCH = [f"--config={CONFIGS}/scratch.py:smoke", f"--eval_config={CONFIGS}/eval.py:smoke",
           "--data_source=synthetic"]
# The classifier alone re-learnt on precomputed features: the quickest stream.
SCHEDULE = ["--eval_config.schedule=(3,4,5,6)", "--eval_config.finetune=('pln/head',)"]


def _files(folder):
  return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


def _one_line_error(capsys, *needles):
  lines = capsys.readouterr().err.strip().splitlines()
  err = lines[-1]       # a resumed run may first note its overrides
  assert err.startswith("error: ") and not any(
      l.startswith("error") for l in lines[:-1]), lines
  for n in needles:
    assert n in err, err
  return err


def test_an_evaluation_record_is_never_replaced(tmp_path, capsys):
  out = str(tmp_path / "ev")
  args = [*SCRATCH, "--eval_config.schedule=(3,)", "--out", out]
  assert evaluate.main(args) == 0
  before = _files(out)
  capsys.readouterr()
  assert evaluate.main(args) == 1
  _one_line_error(capsys, "already holds an evaluation", "--resume")
  assert evaluate.main([f"--merge={out},{out}", "--out", out]) == 1
  _one_line_error(capsys, "holds an evaluation")
  other = str(tmp_path / "other")
  assert evaluate.main([*SCRATCH, "--eval_config.schedule=(4,)", "--out", other]) == 0
  assert evaluate.main([f"--compare={other}", "--out", out]) == 1
  _one_line_error(capsys, "holds an evaluation")
  assert _files(out) == before
  # a record's own table and plots may be redrawn; the record stays as it is
  assert evaluate.main([f"--compare={out}", "--out", out]) == 0
  assert _files(out)["results.json"] == before["results.json"]
  # --resume of a finished record computes nothing and changes nothing
  capsys.readouterr()
  assert evaluate.main([*args, "--resume"]) == 0
  assert "every N of the schedule is finished; nothing to resume" in capsys.readouterr().out
  assert _files(out) == before
  # a record written before a config key existed resumes: the key's default
  # reproduces it (here: keys of closed-form-head meta-training)
  saved = json.loads(before["results.json"])
  for k in ("ways", "shots", "queries", "head", "head_reg", "head_scale"):
    del saved["model_config"][k]
  del saved["model_config"]["model"]["gate"]
  reporting.atomic_write(os.path.join(out, "results.json"), json.dumps(saved))
  assert evaluate.main([*args, "--resume"]) == 0
  assert json.load(open(os.path.join(out, "results.json")))["per_n"] == saved["per_n"]
  # --resume with another protocol is refused, naming the difference
  assert evaluate.main([*SCRATCH, "--eval_config.schedule=(3,)", "--eval_config.runs=3",
                        "--out", out, "--resume"]) == 1
  _one_line_error(capsys, "runs=2 (now 3)")
  assert json.load(open(os.path.join(out, "results.json"))) == saved


def test_resume_without_a_record_is_an_error_and_writes_nothing(tmp_path, capsys):
  missing = str(tmp_path / "typo")
  assert evaluate.main([*SCRATCH, "--out", missing, "--resume"]) == 1
  _one_line_error(capsys, "holds no results.json", "drop --resume")
  assert train.main(["--workdir", missing, "--resume", *SYNTHETIC]) == 1
  _one_line_error(capsys, "holds no run to continue")
  assert not os.path.exists(missing)
  os.makedirs(missing)
  assert train.main(["--workdir", missing, "--resume", *SYNTHETIC]) == 1
  _one_line_error(capsys, "holds no run to continue")
  assert os.listdir(missing) == []


def test_an_output_path_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
  """--out (or --workdir) naming an existing file, such as README.md: one
  line naming it, the file as it was, for every command that writes a folder."""
  path = tmp_path / "README.md"
  path.write_text("keep me\n")
  assert evaluate.main([*SCRATCH, "--out", str(path)]) == 1
  _one_line_error(capsys, f"{path} is a file", "give another path", "Nothing was changed")
  assert train.main(["--workdir", str(path), *smoke_args()]) == 1
  _one_line_error(capsys, f"{path} is a file")
  assert path.read_text() == "keep me\n" and os.listdir(tmp_path) == ["README.md"]


def test_an_unknown_learner_is_one_line_naming_the_known_ones(tmp_path, capsys):
  out = tmp_path / "e"
  assert evaluate.main([*SCRATCH, "--out", str(out), "--eval_config.learner=adamw"]) == 1
  _one_line_error(capsys, "learner='adamw'", "gaussian", "prototype", "ridge")
  assert not out.exists()


def test_a_folder_in_use_is_refused_by_every_command_until_its_holder_ends(tmp_path, capsys):
  """Two commands never write one run or record at once: while another
  process holds a folder, train.py, evaluate.py and analyze.py refuse it in
  one line naming the holder and write nothing; a holder killed with SIGKILL
  lets it go (the lock is the system's, not a file left behind)."""
  out = str(tmp_path / "busy")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom anml_jax import cli\n"
       "with cli.exclusive(sys.argv[1], 'evaluate.py'):\n  print('held', flush=True)\n"
       "  time.sleep(120)\n", out], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    busy = f"{out} is in use by another process (evaluate.py, pid {holder.pid})"
    evaluation = [*SCRATCH, "--eval_config.schedule=(3,)", "--out", out]
    assert evaluate.main(evaluation) == 1
    _one_line_error(capsys, busy)
    assert train.main(["--workdir", out, "--resume", *SYNTHETIC]) == 1
    _one_line_error(capsys, busy)
    assert analyze.main(["--checkpoint", str(tmp_path / "none"), "--out", out]) == 1
    _one_line_error(capsys, busy)
    assert os.listdir(out) == [".lock"]
  finally:
    holder.kill()
    holder.wait()
  assert evaluate.main(evaluation) == 0
  assert "results.json" in os.listdir(out) and ".lock" not in os.listdir(out)


def test_exclusive_takes_a_free_folder_and_leaves_no_trace(tmp_path):
  new, old = str(tmp_path / "new"), str(tmp_path / "old")
  os.makedirs(old)
  for folder in (new, old):
    with cli.exclusive(folder, "train.py"):
      assert open(os.path.join(folder, ".lock")).read() == f"{os.getpid()} train.py\n"
      busy = re.escape(f"in use by another process (train.py, pid {os.getpid()})")
      with pytest.raises(cli.UsageError, match=busy):
        with cli.exclusive(folder, "train.py"):
          pass
  assert not os.path.exists(new)        # created here and left empty: gone
  assert os.listdir(old) == []          # there before: kept, without the lock file


def test_a_write_that_fails_leaves_the_old_record_whole(tmp_path, monkeypatch):
  out = str(tmp_path)
  rec = {"method": "anml", "per_n": [{"classes": 3, "train_mean": 0.5, "train_std": 0.0,
                                      "test_mean": 0.25, "test_std": 0.0, "lr": 1e-3,
                                      "test_runs": [0.25]}]}
  reporting.write_results(out, rec)
  old = _files(out)

  def fail(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError):
    reporting.write_results(out, {**rec, "method": "oml"})
  monkeypatch.undo()
  assert {f: v for f, v in _files(out).items() if ".tmp" not in f} == old


def test_truncated_nan_and_corrupt_checkpoints_are_one_line_errors(tmp_path, capsys):
  run = str(tmp_path / "run")
  assert train.main(["--workdir", run, *smoke_args(steps=4)]) == 0
  # the run's summary names the weights it ended with, as its evaluations will
  summary = json.load(open(os.path.join(run, "summary.json")))
  assert summary["final_step"] == 4
  assert summary["checkpoint_sha256"] == checkpointing.fingerprint(run)
  path = str(tmp_path / "p.npz")
  checkpointing.export_params(run, path)
  # the fingerprint of a parameter file is its sha256sum
  import hashlib
  assert checkpointing.fingerprint(path) == hashlib.sha256(open(path, "rb").read()).hexdigest()
  bad = str(tmp_path / "bad.npz")
  with open(bad, "wb") as f:
    f.write(open(path, "rb").read()[:1000])
  capsys.readouterr()
  assert evaluate.main([*SCRATCH[1:], "--checkpoint", bad, "--out", str(tmp_path / "e")]) == 1
  _one_line_error(capsys, bad, "truncated or corrupt")
  assert not os.path.exists(str(tmp_path / "e" / "results.json"))
  with np.load(path) as f:
    arrays = dict(f)
  arrays["nm/to_gate/linear/bias"] = np.full_like(arrays["nm/to_gate/linear/bias"], np.nan)
  nan = str(tmp_path / "nan.npz")
  np.savez(nan, **arrays)
  with pytest.raises(checkpointing.CheckpointError, match="nm/to_gate/linear/bias"):
    checkpointing.load_run(nan)
  # an Orbax checkpoint with a truncated array file: named, with the fix
  step_dir = os.path.join(run, "checkpoints", "4")
  victims = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state"))
             for f in fs if os.path.getsize(os.path.join(d, f)) > 64]
  for v in victims:
    with open(v, "r+b") as f:
      f.truncate(16)
  assert train.main(["--workdir", run, "--resume", *SYNTHETIC, "--config.steps=6"]) == 1
  _one_line_error(capsys, f"{os.path.join(run, 'checkpoints')}/4 cannot be read",
                  "resume from step 2")


def test_an_evaluation_killed_mid_way_resumes_without_recomputing(tmp_path):
  """SIGKILL after the first N's record is written; --resume keeps the
  finished rows byte for byte and completes the others with the numbers of an
  uninterrupted evaluation."""
  killed, whole = str(tmp_path / "killed"), str(tmp_path / "whole")
  cmd = [sys.executable, os.path.join(REPO, "evaluate.py"), *SCRATCH, *SCHEDULE,
         "--out", killed]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  record = os.path.join(killed, "results.json")
  deadline = time.monotonic() + 300
  rows = []
  while time.monotonic() < deadline and proc.poll() is None:
    if os.path.isfile(record):
      rows = json.load(open(record))["per_n"]
      if rows:
        proc.send_signal(signal.SIGKILL)
        break
    time.sleep(0.02)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the evaluation ended before it was killed"
  before = json.load(open(record))             # what the killed process had written
  kept = before["per_n"]
  assert 1 <= len(kept) < 4
  assert evaluate.main([*SCRATCH, *SCHEDULE, "--out", killed, "--resume"]) == 0
  assert evaluate.main([*SCRATCH, *SCHEDULE, "--out", whole]) == 0
  resumed = json.load(open(record))
  uninterrupted = json.load(open(os.path.join(whole, "results.json")))
  assert [r["classes"] for r in resumed["per_n"]] == [3, 4, 5, 6]
  assert resumed["per_n"][:len(kept)] == kept                  # not recomputed
  assert len(resumed["resumed"]) == 1 and "--resume" in resumed["resumed"][0]["command"]
  for a, b in zip(resumed["per_n"], uninterrupted["per_n"]):
    assert (a["classes"], a["hyper"], a["test_runs"], a["train_runs"]) == (
        b["classes"], b["hyper"], b["test_runs"], b["train_runs"])
  assert resumed["forgetting"] == uninterrupted["forgetting"]
  # each shorter stream's forgetting is kept, the killed record's with its time
  assert [e["forgetting"]["classes"] for e in resumed["earlier"]] == [3, 4, 5]
  assert [e["forgetting"] for e in resumed["earlier"]] == [
      e["forgetting"] for e in uninterrupted["earlier"]]
  assert {"forgetting": before["forgetting"], "seconds": before["seconds"]} in resumed["earlier"]


def test_cpu_model_tells_apart_hosts_a_hypervisor_names_alike():
  """Benchmarks and records name their CPU; "AMD EPYC" alone named a host
  with 6x the matmul rate of another (HISTORY.md, "Benchmarks measured")."""
  zen = ("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {}\nmodel\t\t: {}\n"
         "flags\t\t: {}\n\nprocessor\t: 1\nmodel name\t: other\n")
  new = provenance.cpu_model(zen.format(26, 2, "fpu avx2 avx512f"))
  old = provenance.cpu_model(zen.format(23, 49, "fpu avx avx2"))
  assert new == "AMD EPYC (family 26, model 2, avx512f)"
  assert old == "AMD EPYC (family 23, model 49, avx2)"
  assert provenance.cpu_model("processor\t: 0\nCPU implementer\t: 0x41\n")   # no model name
