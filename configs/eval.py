"""The meta-test protocol: ``--eval_config=configs/eval.py`` (the paper's),
``:cpu`` (reduced for a 2-core CPU), ``:quick`` (the README's Quickstart: the
Gaussian head, 3 runs), ``:validation`` (the paper's protocol on the held-out
meta-training alphabets, N up to 200) or ``:smoke``; fields and their sources in
anml_jax/configs.py (``get_eval_config``)."""
from anml_jax import configs


def get_config(name: str = "default"):
  return configs.get_eval_config(name)
