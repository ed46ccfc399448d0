"""anml-jax: ANML (Beaulieu et al., ECAI 2020) in JAX/Flax.

Public API: the gate (:mod:`anml_jax.gating`), the networks
(:func:`make_anml`, :func:`make_oml`), the inner loop, the meta-training step
and the continual-learning evaluator.
"""
from anml_jax.continual import make_stream_evaluator
from anml_jax.gating import gate, gated
from anml_jax.learner import make_sequential_learner
from anml_jax.meta import (MetaState, init_state, make_meta_gradient, make_meta_loss,
                           make_meta_train_step)
from anml_jax.models import Network, head_only, head_params, make_anml, make_oml

__all__ = ["gate", "gated", "make_anml", "make_oml", "Network", "head_only", "head_params", "make_sequential_learner",
           "MetaState", "init_state", "make_meta_gradient", "make_meta_loss",
           "make_meta_train_step",
           "make_stream_evaluator"]
