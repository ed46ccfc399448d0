"""Analytic FLOPs of one ANML meta-step, and the machine's matmul rate.

  python bench/flops.py     # FLOPs per training step and per run of anml, asb, pretrain

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


def trunk_flops(channels: int, in_channels: int = 3, size: int = 28) -> int:
  """Forward FLOPs of ANML's conv trunk (3 valid 3x3 convs, pools after 1-2)."""
  flops, cin, h = 0, in_channels, size
  for block in range(3):
    h = h - 2
    flops += 2 * h * h * channels * 9 * cin
    cin = channels
    if block < 2:
      h //= 2
  return flops


def anml_image_flops(nm_channels=112, pln_channels=256, num_outputs=1000):
  """(NM, PLN) forward FLOPs for one image."""
  width = 9 * pln_channels
  nm = trunk_flops(nm_channels) + 2 * 9 * nm_channels * width
  pln = trunk_flops(pln_channels) + 2 * width * num_outputs
  return nm, pln


def meta_step_flops(cfg) -> dict:
  """Analytic FLOPs of one meta-step of an ANML config (per trajectory x
  ``cfg.meta_batch``)."""
  m = cfg.model
  nm, pln = anml_image_flops(m.nm_channels, m.pln_channels, m.num_outputs)
  t, mm = cfg.traj_len, cfg.remember_size + cfg.traj_len
  forward = (t + mm) * nm + 3 * t * pln + mm * pln
  reverse = 2 * (t + mm) * nm + 2 * mm * pln + (0 if cfg.first_order else 6 * t * pln)
  return {"nm_forward_per_image": nm, "pln_forward_per_image": pln,
          "per_trajectory": forward + reverse,
          "per_meta_step": (forward + reverse) * cfg.meta_batch}


def training_step_flops(cfg) -> int:
  """Analytic FLOPs of one training step of an ANML-network method (anml,
  asb, pretrain), forward plus the reverse pass at 2x:

  - anml: :func:`meta_step_flops`;
  - asb: T inner SGD steps, one image each, then the remember batch of M, each
    image forward and backward: 3 (T + M) (P + g N), g = 1 if the gate is on;
  - pretrain: a batch of B images forward and backward: 3 B (P + N).
  """
  m = cfg.model
  nm, pln = anml_image_flops(m.nm_channels, m.pln_channels, m.num_outputs)
  if cfg.method == "anml":
    return meta_step_flops(cfg)["per_meta_step"]
  if cfg.method == "asb":
    images = cfg.traj_len + cfg.remember_size + cfg.traj_len
    return 3 * images * (pln + (nm if m.gate else 0))
  if cfg.method == "pretrain":
    return 3 * cfg.pretrain_batch * (pln + nm)
  raise ValueError(f"no analytic FLOPs for method {cfg.method!r}")


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
  for method, kw in (("anml", {}), ("anml", {"first_order": True}), ("asb", {}),
                     ("pretrain", {"steps": 2000})):
    cfg = configs.get_config("default", method)
    cfg.update(kw)
    f = training_step_flops(cfg)
    print(f"{method:9s} {str(kw):24s} {f / 1e9:7.2f} GFLOP/step  {cfg.steps:6d} steps  "
          f"{f * cfg.steps / 1e15:6.3f} PFLOP")


if __name__ == "__main__":
  main()
