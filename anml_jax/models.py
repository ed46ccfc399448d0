"""ANML's networks (NM and PLN), OML's (RLN and PLN), as Flax modules.

A network is exposed as a :class:`Network` of pure functions over plain
parameter dicts, split in two stages so that the part of the forward pass that
the inner loop does not adapt can be computed once, batched, outside the
sequential loop:

* ``context(params, x)`` reads only ``params[k]`` for ``k in context_keys``
  (ANML: the NM gate logits; OML: the RLN representation);
* ``features(params, x, ctx)`` gives the input of the linear output layer
  (the *head*, at ``head_path``), reading no head parameter;
  ``head_input(params, x)`` is the same from the images alone;
* ``predict(params, x, ctx)`` gives the logits: the head applied to the
  features.

``apply(params, x) == predict(params, x, context(params, x))``. When only the
head is re-learnt (the meta-test default of ANML and pretrain) the features of
every image are fixed, so they too are computed once: :func:`head_only` is the
head alone as a :class:`Network` over such precomputed features.

Shapes: images are ``(B, S, S, 1)`` floats, S = ``image_size`` (Omniglot: 28; see
``data.preprocess``); the
single grey channel is tiled to ``in_channels`` as the original code's
``convert('RGB')`` does (ANML's first conv sums its kernel over them instead,
the same function: :func:`grey_conv_instance_norm`). Logits are
``(B, num_outputs)``.
"""
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from anml_jax import gating
from anml_jax.types import Params

# torch.nn.init.kaiming_normal_ defaults: fan_in, gain sqrt(2), untruncated.
kaiming_normal = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def resolve_conv_impl(impl: str) -> str:
  """'auto' -> 'im2col': measured faster than XLA's convolution for these
  small 3x3 valid convolutions on both CPU and H100 (HISTORY.md, "Benchmarks measured")."""
  if impl == "auto":
    return "im2col"
  if impl not in ("xla", "im2col"):
    raise ValueError(f"conv_impl must be 'auto', 'xla' or 'im2col', got {impl!r}")
  return impl


def conv3x3(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
  """Valid 3x3 convolution.

  Args:
    x: (B, H, W, Cin).
    kernel: (3, 3, Cin, Cout).
    stride: spatial stride.
    impl: 'xla' (lax.conv) or 'im2col' (9 shifted slices, one matmul).

  Returns:
    (B, (H - 3) // stride + 1, (W - 3) // stride + 1, Cout).
  """
  if impl == "xla":
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return patches_3x3(x, stride) @ kernel.reshape(9 * x.shape[-1], -1)


def patches_3x3(x: jax.Array, stride: int) -> jax.Array:
  """The 3x3 windows of a valid convolution, as rows (im2col).

  (B, H, W, C) -> (B, Ho, Wo, 9 * C), ordered (dy, dx, c) like a (3, 3, C, ...)
  kernel reshaped to (9 * C, ...).
  """
  _, h, w, _ = x.shape
  ho, wo = (h - 3) // stride + 1, (w - 3) // stride + 1
  return jnp.concatenate([
      x[:, dy:dy + stride * (ho - 1) + 1:stride,
        dx:dx + stride * (wo - 1) + 1:stride, :]
      for dy in range(3) for dx in range(3)], axis=-1)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, floor mode (B, H, W, C) -> (B, H//2, W//2, C)."""
  b, h, w, c = x.shape
  x = x[:, :2 * (h // 2), :2 * (w // 2)]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
  """3x3 valid convolution with bias; kaiming-normal kernel
  (3, 3, in_features, features), zero bias."""
  in_features: int
  features: int
  stride: int = 1
  impl: str = "xla"

  def setup(self):
    self.kernel = self.param("kernel", kaiming_normal,
                             (3, 3, self.in_features, self.features))
    self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

  def __call__(self, x):
    return conv3x3(x, self.kernel, self.stride, self.impl) + self.bias


class InstanceNorm(nn.Module):
  """Per-image, per-channel normalisation over H and W with an affine map
  (scale and bias of shape (features,)).

  The original applies ``F.batch_norm(training=True)`` to one image at a time,
  which is exactly this (biased variance, eps 1e-5).
  """
  features: int
  eps: float = 1e-5

  def setup(self):
    self.scale = self.param("scale", nn.initializers.ones, (self.features,))
    self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

  def __call__(self, x):
    mean = x.mean(axis=(-3, -2), keepdims=True)
    var = jnp.square(x - mean).mean(axis=(-3, -2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale + self.bias


def grey_conv_instance_norm(x: jax.Array, kernel: jax.Array, scale: jax.Array,
                            shift: jax.Array, eps: float) -> jax.Array:
  """Instance norm of the valid 3x3 convolution of a grey image tiled to
  ``kernel``'s input channels, computed without the un-normalised output.

  The conv's output at each position is ``p @ w`` for the image's 9 pixels
  ``p`` around it, with ``w`` the kernel summed over its (identical) input
  channels, so its per-image mean and variance are ``mean(p) @ w`` and
  ``w.T @ cov(p) @ w`` (a 9 x 9 patch covariance), and the normalised output
  is one matmul with a per-image kernel ``w * a``, ``a = scale /
  sqrt(var + eps)``. A conv bias would cancel in the normalisation, so there
  is none (the direct path's bias gradient is zero up to rounding). Equal
  to ``InstanceNorm(conv3x3(tile(x), kernel) + bias)`` up to float rounding
  (tests/test_models.py), with a backward pass that reads the (B, H-2, W-2,
  C) activations about half as often (HISTORY.md, "Benchmarks measured").

  Args:
    x: (B, H, W, 1) grey images.
    kernel: (3, 3, Cin, C), applied to x tiled to Cin channels.
    scale, shift: (C,) the norm's affine map.
    eps: the norm's variance epsilon.

  Returns:
    (B, H - 2, W - 2, C).
  """
  b, h, w_, _ = x.shape
  w = kernel.sum(axis=2).reshape(9, -1)                            # (9, C)
  patches = patches_3x3(x, 1).reshape(b, -1, 9)                    # (B, N, 9)
  mean = patches.mean(axis=1)                                      # (B, 9)
  centred = patches - mean[:, None]
  cov = jnp.einsum("bni,bnj->bij", centred, centred) / patches.shape[1]
  var = jnp.maximum(jnp.einsum("bij,ic,jc->bc", cov, w, w), 0.0)  # (B, C)
  a = jax.lax.rsqrt(var + eps) * scale
  out = jnp.einsum("bni,bic->bnc", patches, w[None] * a[:, None]) + (
      shift - (mean @ w) * a)[:, None]
  return out.reshape(b, h - 2, w_ - 2, -1)


class ConvStack(nn.Module):
  """ANML's trunk: 3 x (conv3x3 -> instance norm -> ReLU [-> max-pool 2x2]).

  (B, S, S, 1) grey images, tiled to ``in_channels`` -> (B, s * s *
  channels) with pools after blocks 1 and 2, s = ((S - 2) // 2 - 2) // 2 - 2
  (3 for S = 28). With ``impl='im2col'`` the
  first block is :func:`grey_conv_instance_norm`.
  """
  channels: int
  in_channels: int = 3
  pools: Sequence[bool] = (True, True, False)
  impl: str = "xla"

  @nn.compact
  def __call__(self, x):
    cin = self.in_channels
    for i, pool in enumerate(self.pools):
      conv = Conv3x3(cin, self.channels, impl=self.impl, name=f"conv{i + 1}")
      norm = InstanceNorm(self.channels, name=f"norm{i + 1}")
      if i == 0 and self.impl == "im2col":
        x = grey_conv_instance_norm(_check_grey(x), conv.kernel, norm.scale, norm.bias,
                                    norm.eps)
      else:
        x = norm(conv(_tile_channels(x, cin) if i == 0 else x))
      x = nn.relu(x)
      if pool:
        x = max_pool_2x2(x)
      cin = self.channels
    return x.reshape(x.shape[0], -1)


class Dense(nn.Module):
  """Linear layer with kaiming-normal kernel (in, out) and zero bias."""
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features, kernel_init=kaiming_normal,
                    bias_init=nn.initializers.zeros, name="linear")(x)


class NeuromodulatoryNet(nn.Module):
  """NM: ConvStack(nm_channels) -> Dense(gate_width); returns gate logits.

  ``apply(..., method='activations')`` gives the trunk's (B, s * s * channels)
  activations instead (the NM's own representation)."""
  channels: int = 112
  gate_width: int = 2304
  in_channels: int = 3
  impl: str = "xla"

  def setup(self):
    self.trunk = ConvStack(self.channels, self.in_channels, impl=self.impl)
    self.to_gate = Dense(self.gate_width)

  def __call__(self, x):
    return self.to_gate(self.trunk(x))

  def activations(self, x):
    return self.trunk(x)

  def logits_from_activations(self, h):
    return self.to_gate(h)


class OMLRepresentation(nn.Module):
  """OML's RLN as in the ANML repo: 6 convs (strides 1,1,1,2,1,2) + ReLU."""
  channels: int = 256
  strides: Sequence[int] = (1, 1, 1, 2, 1, 2)
  impl: str = "xla"

  @nn.compact
  def __call__(self, x):
    for i, s in enumerate(self.strides):
      conv = Conv3x3(x.shape[-1], self.channels, s, self.impl, name=f"conv{i + 1}")
      x = nn.relu(conv(x))
    return x.reshape(x.shape[0], -1)


class OMLPredictor(nn.Module):
  """OML's PLN: Dense(hidden) -> ReLU -> Dense(num_outputs) on the RLN output."""
  hidden: int = 1024
  num_outputs: int = 1000

  @nn.compact
  def __call__(self, h):
    h = nn.relu(Dense(self.hidden, name="hidden")(h))
    return Dense(self.num_outputs, name="head")(h)


def linear(head: Params, h: jax.Array) -> jax.Array:
  """The output layer: h (B, D) @ kernel (D, K) + bias (K,) -> (B, K)."""
  return h @ head["kernel"] + head["bias"]


def get_path(tree: dict, path: Sequence[str]):
  """``tree[path[0]][path[1]]...``."""
  for k in path:
    tree = tree[k]
  return tree


class Network(NamedTuple):
  """A network as pure functions over a plain parameter dict.

  Attributes:
    name: 'anml', 'oml' (or a user's name).
    init: key -> params (jitted for ANML and OML).
    context: (params, x (B, ...)) -> context (B, C); reads only
      ``params[k]`` for k in ``context_keys``.
    features: (params, x (B, ...), context (B, C)) -> (B, D), the input of
      the linear head; reads no parameter under ``head_path``.
    context_keys: top-level parameter keys the context depends on.
    head_path: path of the output layer's ``{'kernel': (D, K), 'bias': (K,)}``.
    probes: optional (params, x (B, ...)) -> {name: (B, D_name)}, the
      network's internal representations by name, for analyses
      (``anml_jax.analysis``).
    input_shape: (H, W, K) of one input image, or None if not fixed
      (:func:`check_input`).
  """
  name: str
  init: Callable[[jax.Array], Params]
  context: Callable[[Params, jax.Array], jax.Array]
  features: Callable[[Params, jax.Array, jax.Array], jax.Array]
  context_keys: tuple
  head_path: tuple
  probes: Callable[[Params, jax.Array], dict] | None = None
  input_shape: tuple | None = None

  def head_input(self, params: Params, x: jax.Array,
                 ctx: jax.Array | None = None) -> jax.Array:
    """The output layer's input (B, D) from the images and their context
    (B, C), computed from ``params`` when None."""
    if ctx is None:
      ctx = self.context(params, x)
    return self.features(params, x, ctx)

  def predict(self, params: Params, x: jax.Array,
              ctx: jax.Array | None = None) -> jax.Array:
    """Logits (B, K) from the images and their context (B, C), computed
    from ``params`` when None."""
    return linear(get_path(params, self.head_path), self.head_input(params, x, ctx))

  def apply(self, params: Params, x: jax.Array) -> jax.Array:
    """Full forward pass: (B, *input_shape) -> (B, num_outputs) logits."""
    return self.predict(params, x)


def head_only(net: Network) -> Network:
  """``net``'s output layer alone, as a network whose input is ``net``'s
  features: x (B, D) -> logits (B, K). Its parameters are
  :func:`head_params` of ``net``'s; its context is its input.

  ``head_only(net).apply(head_params(p), net.features(p, x, c))
  == net.predict(p, x, c)``.
  """
  return Network(f"{net.name}/head", init=None, context=lambda params, x: x,
                 features=lambda params, x, ctx: ctx, context_keys=(),
                 head_path=net.head_path)


def head_params(params: Params, head_path: Sequence[str]) -> Params:
  """The sub-dict of ``params`` that holds only the head, at ``head_path``."""
  out = get_path(params, head_path)
  for k in reversed(tuple(head_path)):
    out = {k: out}
  return out


def _output_width(module: nn.Module, probe: jax.Array) -> int:
  """Feature width of ``module`` on ``probe``, computed abstractly (no FLOPs)."""
  out = jax.eval_shape(
      lambda: module.apply(module.init(jax.random.key(0), probe), probe))
  return out.shape[-1]


def check_input(net: Network, image_shape: Sequence[int]) -> None:
  """Raises ValueError unless images of shape ``image_shape`` (H, W, K), read
  from a dataset's arrays, are what ``net`` was built for."""
  if net.input_shape is not None and tuple(image_shape) != tuple(net.input_shape):
    raise ValueError(
        f"the data's images are {tuple(image_shape)} but the {net.name} network "
        f"takes {tuple(net.input_shape)}: train a network for them "
        f"(--config.model.image_size={image_shape[0]}; the networks take square grey "
        "images, K = 1) or give this one images of its size")


def _check_grey(x: jax.Array) -> jax.Array:
  if x.ndim != 4 or x.shape[-1] != 1:
    raise ValueError(f"expected images of shape (B, H, W, 1), got {x.shape}")
  return x


def _tile_channels(x: jax.Array, in_channels: int) -> jax.Array:
  return jnp.broadcast_to(_check_grey(x), x.shape[:-1] + (in_channels,))


def make_anml(*, nm_channels: int = 112, pln_channels: int = 256,
              num_outputs: int = 1000, in_channels: int = 3,
              image_size: int = 28, conv_impl: str = "auto",
              gated: bool = True) -> Network:
  """ANML: NM gate logits (context) gate the PLN's flattened conv features.

  With ``gated`` False the features are the PLN's ungated (the ablation of
  the gate): the NM keeps its parameters, so every ANML checkpoint has one
  layout, but nothing reads them and no gradient reaches them.

  Params: ``{'nm': {...}, 'pln': {'features': {...}, 'head': {'kernel': (D,
  num_outputs), 'bias': (num_outputs,)}}}`` with D = 9 * pln_channels for 28px
  input (2304 for the paper's sizes).
  """
  impl = resolve_conv_impl(conv_impl)
  feat = ConvStack(pln_channels, in_channels, impl=impl)
  probe = jnp.zeros((1, image_size, image_size, 1))
  width = _output_width(feat, probe)
  nm = NeuromodulatoryNet(nm_channels, width, in_channels, impl)
  head = Dense(num_outputs)

  @jax.jit   # one compile; eagerly, every parameter shape compiles its own sampler
  def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "nm": nm.init(k1, probe)["params"],
        "pln": {"features": feat.init(k2, probe)["params"],
                "head": head.init(k3, jnp.zeros((1, width)))["params"]["linear"]},
    }

  def context(params, x):
    return nm.apply({"params": params["nm"]}, x)

  def ungated(params, x):
    return feat.apply({"params": params["pln"]["features"]}, x)

  def features(params, x, ctx):
    return gating.gate(ungated(params, x), ctx) if gated else ungated(params, x)

  def probes(params, x):
    """PLN features before and after the gate, the gate, the NM trunk."""
    v = {"params": params["nm"]}
    n = nm.apply(v, x, method="activations")
    logits = nm.apply(v, n, method="logits_from_activations")   # the NM trunk runs once
    h = ungated(params, x)
    return {"pln_before_gate": h, "gate": gating.gate_values(logits),
            "pln_after_gate": gating.gate(h, logits), "nm": n}

  return Network("anml", init, context, features, ("nm",), ("pln", "head"), probes,
                 (image_size, image_size, 1))


def make_oml(*, channels: int = 256, hidden: int = 1024,
             num_outputs: int = 1000, in_channels: int = 3,
             image_size: int = 28, conv_impl: str = "auto") -> Network:
  """OML: RLN representation (context) feeds a 2-layer PLN.

  Params: ``{'rln': {...}, 'pln': {'hidden': {'linear': ...}, 'head': {...}}}``.
  """
  impl = resolve_conv_impl(conv_impl)
  rln = OMLRepresentation(channels, impl=impl)
  probe = jnp.zeros((1, image_size, image_size, in_channels))
  width = _output_width(rln, probe)
  pln = OMLPredictor(hidden, num_outputs)

  @jax.jit
  def init(key):
    k1, k2 = jax.random.split(key)
    p = pln.init(k2, jnp.zeros((1, width)))["params"]
    return {"rln": rln.init(k1, probe)["params"],
            "pln": {"hidden": p["hidden"]["linear"], "head": p["head"]["linear"]}}

  def context(params, x):
    return rln.apply({"params": params["rln"]}, _tile_channels(x, in_channels))

  def features(params, x, ctx):
    del x
    return jax.nn.relu(linear(params["pln"]["hidden"], ctx))

  def probes(params, x):
    """The RLN's representation (what OML's PLN learns from)."""
    return {"representation": context(params, x)}

  return Network("oml", init, context, features, ("rln",), ("pln", "head"), probes,
                 (image_size, image_size, 1))


def reinit_head(params: Params, head_path: Sequence[str], key: jax.Array,
                rows: jax.Array | None = None, *, block: bool = False) -> Params:
  """Re-draws output units of the head as the original code does.

  Args:
    params: parameter dict.
    head_path: path of the head's ``{'kernel': (D, K), 'bias': (K,)}``.
    key: PRNG key.
    rows: (M,) int output units to redraw (weights only, bias kept), as
      ``reset_classifer`` before each meta-step; ``None`` redraws the whole
      kernel and zeroes the bias, as at the start of meta-test.
    block: with ``rows``, the std of Kaiming's rule applied to the (1, M, D)
      block of all M rows at once, sqrt(2 / (M * D)), as the zapping code
      of Frati et al. 2023 does for several rows (docs/fidelity.md); else
      each row's own, sqrt(2 / D).

  Returns:
    params with the head replaced (other leaves shared, not copied).
  """
  head = get_path(params, head_path)
  kernel = head["kernel"]
  fan_in = kernel.shape[0]
  scale = rows.shape[0] if block and rows is not None else 1
  std = jnp.sqrt(2.0 / (fan_in * scale)).astype(kernel.dtype)
  if rows is None:
    new = {"kernel": std * jax.random.normal(key, kernel.shape, kernel.dtype),
           "bias": jnp.zeros_like(head["bias"])}
  else:
    draw = std * jax.random.normal(key, (fan_in, rows.shape[0]), kernel.dtype)
    new = {"kernel": kernel.at[:, rows].set(draw), "bias": head["bias"]}
  return _replace_at(params, tuple(head_path), new)


def _replace_at(tree: dict, path: tuple, value) -> dict:
  if not path:
    return value
  out = dict(tree)
  out[path[0]] = _replace_at(tree[path[0]], path[1:], value)
  return out
