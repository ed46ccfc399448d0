"""Neuromodulatory gating as pure functions.

ANML multiplies the features of a prediction network element-wise by a gate in
(0, 1) produced by a second (neuromodulatory) network. Because the gate
multiplies the activations, it scales the gradients that flow back into the
gated network too: a gate near zero both silences a feature and freezes the
weights that produce it for that input (selective plasticity).

Everything here works for any pair of ``(params, x) -> array`` functions, so
the gate composes into models that are not ANML's: functionally
(:func:`gated`) or as a Flax module (:class:`Gated`).
"""
from typing import Callable

import flax.linen as nn
import jax

from anml_jax.types import Params

FeatureFn = Callable[[Params, jax.Array], jax.Array]


def gate(features: jax.Array, gate_logits: jax.Array) -> jax.Array:
  """Multiplies ``features`` by ``sigmoid(gate_logits)``.

  Args:
    features: (..., D) activations of the gated network.
    gate_logits: (..., D) pre-sigmoid output of the modulating network; must
      broadcast against ``features``.

  Returns:
    (..., D) gated features.
  """
  if features.shape[-1] != gate_logits.shape[-1]:
    raise ValueError(
        f"gate: features have width {features.shape[-1]} but the gate has "
        f"width {gate_logits.shape[-1]}; the modulating network's output "
        "must match the gated feature width.")
  return features * jax.nn.sigmoid(gate_logits)


def gated(feature_fn: FeatureFn, modulator_fn: FeatureFn) -> FeatureFn:
  """Builds ``(params, x) -> features * sigmoid(modulator)``.

  Args:
    feature_fn: ``(params, x) -> (B, D)`` the network to gate.
    modulator_fn: ``(params, x) -> (B, D)`` the modulating network's logits.

  Returns:
    A function of ``params = {'features': ..., 'modulator': ...}`` and ``x``
    returning the (B, D) gated features. It is a pure function: jit, grad and
    vmap it like any other.
  """

  def apply(params: Params, x: jax.Array) -> jax.Array:
    return gate(feature_fn(params["features"], x),
                modulator_fn(params["modulator"], x))

  return apply


class Gated(nn.Module):
  """``Gated(features, modulator)(x) = features(x) * sigmoid(modulator(x))``.

  The module form of :func:`gated`, in the spirit of ``nn.Sequential``: both
  submodules see the same input and return (B, D) arrays of one width. Its
  parameters are ``{'features': ..., 'modulator': ...}``, initialised by
  ``init`` as any Flax module's.
  """
  features: nn.Module
  modulator: nn.Module

  def __call__(self, x: jax.Array) -> jax.Array:
    return gate(self.features(x), self.modulator(x))


def gate_values(gate_logits: jax.Array) -> jax.Array:
  """The gate itself, ``sigmoid(gate_logits)``, for inspection (e.g. sparsity)."""
  return jax.nn.sigmoid(gate_logits)

