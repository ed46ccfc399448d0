"""The scratch baseline, ANML's network at its random initialisation (for
evaluate.py; it is not trained): ``--config=configs/scratch.py`` or
``--config=configs/scratch.py:smoke``. Values: anml_jax/configs.py and the
method's entry in anml_jax/methods.py."""
from anml_jax import configs


def get_config(name: str = "default"):
  return configs.get_config(name, "scratch")
