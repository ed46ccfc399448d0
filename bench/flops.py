"""Analytic FLOPs of one training step of each method, and the machine's
matmul rate.

  python bench/flops.py     # FLOPs per training step and per run of each method

Counts the multiply-adds (x2) of convolutions and linear layers; norms,
activations, pooling and the optimiser are left out (a few % at these sizes).
Per image: N = NM forward, P = PLN forward (gated head included). With T
trajectory images and M = remember + T meta-loss images, a second-order step is

  gates forward (T + M) N  +  inner forward+backward T * 3P  +  meta-loss M P
  + their reverse pass, ~2x each forward:  2 (T + M) N + 2 M P + 2 * 3 T P

i.e. 3 (T + M) N + 9 T P + 3 M P; first order drops the reverse of the inner
steps (6 T P). The usual rule "backward = 2 x forward" is used throughout.
"""
import time

import jax
import jax.numpy as jnp


def conv_flops(channels: int, strides, pools, in_channels: int = 3,
               size: int = 28) -> tuple[int, int]:
  """(forward FLOPs, output side) of a stack of valid 3x3 convs of
  ``channels``, with ``strides`` and a 2x2 pool after the blocks in ``pools``."""
  flops, cin, h = 0, in_channels, size
  for i, s in enumerate(strides):
    h = (h - 3) // s + 1
    flops += 2 * h * h * channels * 9 * cin
    cin = channels
    if i in pools:
      h //= 2
  return flops, h


def trunk_flops(channels: int, in_channels: int = 3, size: int = 28) -> int:
  """Forward FLOPs of ANML's conv trunk (3 valid 3x3 convs, pools after 1-2)."""
  return conv_flops(channels, (1, 1, 1), (0, 1), in_channels, size)[0]


def anml_image_flops(nm_channels=112, pln_channels=256, num_outputs=1000):
  """(NM, PLN) forward FLOPs for one image."""
  width = 9 * pln_channels
  nm = trunk_flops(nm_channels) + 2 * 9 * nm_channels * width
  pln = trunk_flops(pln_channels) + 2 * width * num_outputs
  return nm, pln


def oml_image_flops(channels=256, hidden=1024, num_outputs=1000):
  """(RLN, PLN) forward FLOPs for one image of OML's network (6 valid convs,
  strides 1,1,1,2,1,2; a 2-layer PLN)."""
  rln, h = conv_flops(channels, (1, 1, 1, 2, 1, 2), ())
  return rln, 2 * h * h * channels * hidden + 2 * hidden * num_outputs


def image_flops(cfg) -> tuple[int, int]:
  """(context, plastic) forward FLOPs per image: ANML's (NM, PLN), OML's
  (RLN, PLN)."""
  m = cfg.model
  if cfg.method == "oml":
    return oml_image_flops(m.oml_channels, m.oml_hidden, m.num_outputs)
  return anml_image_flops(m.nm_channels, m.pln_channels, m.num_outputs)


def meta_step_flops(cfg) -> dict:
  """Analytic FLOPs of one meta-step of an ANML or OML config (per trajectory
  x ``cfg.meta_batch``); the context network (NM, RLN) runs once per image."""
  nm, pln = image_flops(cfg)
  t, mm = cfg.traj_len, cfg.remember_size + cfg.traj_len
  forward = (t + mm) * nm + 3 * t * pln + mm * pln
  reverse = 2 * (t + mm) * nm + 2 * mm * pln + (0 if cfg.first_order else 6 * t * pln)
  return {"nm_forward_per_image": nm, "pln_forward_per_image": pln,
          "per_trajectory": forward + reverse,
          "per_meta_step": (forward + reverse) * cfg.meta_batch}


COUNTED = ("anml", "oml", "asb", "pretrain", "streamhead")


def training_step_flops(cfg) -> int:
  """Analytic FLOPs of one training step of a method of :data:`COUNTED`,
  forward plus the reverse pass at 2x:

  - anml, oml: :func:`meta_step_flops`;
  - asb: T inner SGD steps, one image each, then the remember batch of M, each
    image forward and backward: 3 (T + M) (P + g N), g = 1 if the gate is on;
  - pretrain: a batch of B images forward and backward: 3 B (P + N);
  - streamhead: an episode of E = ways x (shots + queries) images through the
    PLN's trunk and, if the gate is on, the NM, forward and backward:
    3 E (g N + trunk); the prototype head's sums are left out (E x 2,304 adds).
  """
  m = cfg.model
  nm, pln = image_flops(cfg)
  if cfg.method in ("anml", "oml"):
    return meta_step_flops(cfg)["per_meta_step"]
  if cfg.method == "asb":
    images = cfg.traj_len + cfg.remember_size + cfg.traj_len
    return 3 * images * (pln + (nm if m.gate else 0))
  if cfg.method == "pretrain":
    return 3 * cfg.pretrain_batch * (pln + nm)
  if cfg.method == "streamhead":
    return 3 * cfg.ways * (cfg.shots + cfg.queries) * ((nm if m.gate else 0)
                                                      + trunk_flops(m.pln_channels))
  raise ValueError(f"no analytic FLOPs for method {cfg.method!r}; counted: {COUNTED}")


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
  """Best measured dense float32 (n x n) @ (n x n) FLOP/s on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def main():
  from anml_jax import configs
  for method, kw in (("anml", {}), ("anml", {"first_order": True}), ("oml", {}),
                     ("asb", {}), ("pretrain", {"steps": 2000}), ("streamhead", {})):
    cfg = configs.get_config("default", method)
    cfg.update(kw)
    f = training_step_flops(cfg)
    print(f"{method:9s} {str(kw):24s} {f / 1e9:7.2f} GFLOP/step  {cfg.steps:6d} steps  "
          f"{f * cfg.steps / 1e15:6.3f} PFLOP")


if __name__ == "__main__":
  main()
