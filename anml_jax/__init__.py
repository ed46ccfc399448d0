"""anml-jax: ANML (Beaulieu et al., ECAI 2020) in JAX/Flax.

Public API: the gate (:mod:`anml_jax.gating`: :func:`gate`, :func:`gated`,
:class:`Gated`), the networks (:func:`make_anml`, :func:`make_oml`), the
sequential learner both loops run, the meta-training step, the
continual-learning evaluator, the method registry (:mod:`anml_jax.methods`)
and :func:`load_run` for saved meta-parameters.
"""
from anml_jax import methods
from anml_jax.checkpointing import export_params, load_run
from anml_jax.continual import make_stream_evaluator
from anml_jax.gating import Gated, gate, gated
from anml_jax.learner import make_sequential_learner, make_sgd_learner
from anml_jax.meta import MetaState, init_state, make_meta_loss
from anml_jax.models import Network, head_only, head_params, make_anml, make_oml
from anml_jax.steps import make_meta_gradient, make_meta_train_step, make_step

__all__ = ["gate", "gated", "Gated", "make_anml", "make_oml", "Network", "head_only",
           "head_params", "make_sequential_learner", "make_sgd_learner", "MetaState", "init_state",
           "make_meta_gradient", "make_meta_loss", "make_meta_train_step", "make_step",
           "make_stream_evaluator", "methods", "load_run", "export_params"]
