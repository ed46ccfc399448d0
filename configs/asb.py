"""The asb config: ``--config=configs/asb.py`` (Frati et al. 2023 settings) or
``--config=configs/asb.py:smoke`` (seconds on a CPU). Values and their
sources: anml_jax/configs.py and the method's entry in anml_jax/methods.py."""
from anml_jax import configs


def get_config(name: str = "default"):
  return configs.get_config(name, "asb")
