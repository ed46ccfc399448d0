"""anml-jax: ANML (Beaulieu et al., ECAI 2020) in JAX/Flax.

Public API: the gate (:mod:`anml_jax.gating`: :func:`gate`, :func:`gated`,
:class:`Gated`), the networks (:func:`make_anml`, :func:`make_oml`), the
sequential learner both loops run, the meta-training step, the
continual-learning evaluator, the method registry (:mod:`anml_jax.methods`)
and :func:`load_run` for saved meta-parameters.

The names are imported on first use (PEP 562), so that a module that needs
no JAX, such as :mod:`anml_jax.results.store`, imports without it.
"""
import importlib

_HOMES = {
    "gate": "gating", "gated": "gating", "Gated": "gating",
    "make_anml": "models", "make_oml": "models", "Network": "models",
    "head_only": "models", "head_params": "models",
    "make_sequential_learner": "learner", "make_sgd_learner": "learner",
    "MetaState": "meta", "init_state": "meta", "make_meta_loss": "meta",
    "make_meta_train_step": "steps", "make_step": "steps",
    "make_stream_evaluator": "continual",
    "load_run": "checkpointing", "export_params": "checkpointing",
}

__all__ = [*_HOMES, "methods"]


def __getattr__(name: str):
  if name == "methods":
    return importlib.import_module("anml_jax.methods")
  if name not in _HOMES:
    raise AttributeError(f"module 'anml_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(f"anml_jax.{_HOMES[name]}"), name)
  globals()[name] = value
  return value
