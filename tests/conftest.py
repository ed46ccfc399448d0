import os

import jax
import pytest

from anml_jax import data, models

OMNIGLOT_DIR = data.default_omniglot_dir()
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
