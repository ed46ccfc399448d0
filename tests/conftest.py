import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anml_jax import data, models

# One persistent XLA compilation cache for the whole test session and the
# subprocesses it starts (they inherit the variable): many tests compile the
# same smoke-sized steps. Compiled code is keyed by its program, flags and
# versions, so a hit runs what a fresh compile would.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"anml_jax_xla_cache_{os.getuid()}"))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

OMNIGLOT_DIR = data.default_omniglot_dir()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
SYNTHETIC = ["--data_source=synthetic", "--noprogress"]


def smoke_args(method="anml", **overrides):
  """train.py flags: the method's smoke config on synthetic data (30
  classes), plus ``--config.KEY=VALUE`` for each override."""
  return [f"--config={CONFIGS}/{method}.py:smoke", *SYNTHETIC,
          "--config.num_train_classes=30",
          *[f"--config.{k}={v}" for k, v in overrides.items()]]
has_omniglot = os.path.isfile(os.path.join(OMNIGLOT_DIR, "images_background.zip"))
needs_omniglot = pytest.mark.skipif(
    not has_omniglot and not os.environ.get("CI"),
    reason=f"real Omniglot zips not found in {OMNIGLOT_DIR}")


@pytest.fixture(scope="session")
def omniglot():
  return data.load_omniglot(OMNIGLOT_DIR)


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def tiny_anml(num_outputs=7, impl="xla"):
  return models.make_anml(nm_channels=2, pln_channels=3, num_outputs=num_outputs,
                          conv_impl=impl)


def tiny_oml(num_outputs=7):
  return models.make_oml(channels=3, hidden=4, num_outputs=num_outputs,
                         conv_impl="xla")


def toy_net(k):
  """A linear classifier on a class code: the context (and the features) of
  an image are its first ``k`` pixels; logits = code @ W + b (head (k, k)).

  On :func:`coded_images` the code is one-hot, so the logits ``W[c] + b`` are
  computed exactly on any CPU and predictions of two code paths can be
  compared exactly."""
  def context(params, x):
    del params
    return x.reshape(x.shape[0], -1)[:, :k]

  init = lambda key: {"pln": {"head": {
      "kernel": jax.random.normal(key, (k, k)), "bias": jnp.zeros(k)}}}
  return models.Network("toy", init, context, lambda params, x, ctx: ctx, (),
                        ("pln", "head"))


def coded_images(num_classes, seed=0):
  """(C, 20, 28, 28, 1), C <= 140: every drawing of class c has its c-th pixel
  (row-major) set to 1 (the code :func:`toy_net` reads), zeros up to row 5
  and noise from row 5 on."""
  x = np.zeros((num_classes, 20, 28, 28, 1), np.float32)
  for c in range(num_classes):
    x[c, :, c // 28, c % 28, 0] = 1.0
  x[:, :, 5:] = np.random.default_rng(seed).normal(size=(num_classes, 20, 23, 28, 1))
  return jnp.asarray(x)


def pytest_collection_modifyitems(config, items):
  """Everything under tests/slow is marked ``slow`` (``-m "not slow"`` skips it)."""
  del config
  slow = os.path.join(REPO, "tests", "slow") + os.sep
  for item in items:
    if str(item.path).startswith(slow):
      item.add_marker(pytest.mark.slow)
