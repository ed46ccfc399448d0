"""The end-to-end tier: train.py, evaluate.py, analyze.py and export as a user
runs them, on synthetic data. Tests that only read a trained run share one
(:func:`smoke_run`); tests of training itself (resume, NaN stop, seeds,
methods) train their own."""
import pytest

import train
from tests.conftest import smoke_args


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> str:
  """The folder of one ANML smoke run (synthetic data, 30 classes, the smoke
  config's 6 steps), trained once per session. Read it; never write to it."""
  run = str(tmp_path_factory.mktemp("shared") / "anml_smoke")
  assert train.main(["--workdir", run, *smoke_args()]) == 0
  return run
