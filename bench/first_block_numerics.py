"""Float32 error of ANML's two conv paths against float64, on real images.

  python bench/first_block_numerics.py --out bench/results/cpu_first_block_numerics.json

Evaluates the NM gate logits and the logits of ``--params`` (default: the
shipped meta-parameters) on ``--images`` meta-test drawings with
``conv_impl='im2col'`` (the first block from the patch covariance,
``models.grey_conv_instance_norm``) and ``'xla'`` (tiled image, lax.conv,
instance norm), each in float32, against the 'xla' path in float64.
``--synthetic`` uses random images and freshly drawn parameters instead (no
data needed).
"""
import argparse

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import output  # noqa: E402  (it imports anml_jax: after x64 is on)

from anml_jax import checkpointing, data, models  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--params", default="results/pretrained/anml_omniglot.npz")
  p.add_argument("--classes", type=int, default=40)
  p.add_argument("--per-class", type=int, default=3)
  p.add_argument("--synthetic", action="store_true")
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  if args.synthetic:
    params = jax.tree.map(lambda a: a.astype(jnp.float32),
                          models.make_anml().init(jax.random.key(0)))
    x = 0.02 * jax.random.normal(jax.random.key(1), (args.classes * args.per_class, 28, 28, 1),
                                 jnp.float32)
  else:
    _, _, params, _ = checkpointing.load_run(args.params)
    om = data.load_omniglot()
    x = jnp.asarray(om.evaluation[:args.classes, :args.per_class].reshape(-1, 28, 28, 1))
  nets = {impl: models.make_anml(conv_impl=impl) for impl in ("xla", "im2col")}
  p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
  outputs = {"gate_logits": lambda n, p, x: n.context(p, x),
             "logits": lambda n, p, x: n.apply(p, x)}
  rows = []
  for name, f in outputs.items():
    ref = f(nets["xla"], p64, x.astype(jnp.float64))
    for impl, net in nets.items():
      err = float(jnp.abs(f(net, params, x) - ref).max())
      rows.append({"output": name, "conv_impl": impl, "float32_max_abs_err": err,
                   "max_abs_value": float(jnp.abs(ref).max())})
      print(f"{name:12s} {impl:6s} float32 max |error| vs float64 {err:.2e} "
            f"(largest |value| {rows[-1]['max_abs_value']:.2e})")
  if args.out:
    output.save(args.out, {"images": int(x.shape[0]), "synthetic": args.synthetic,
                           "params": None if args.synthetic else args.params, "rows": rows})


if __name__ == "__main__":
  main()
