"""Run by tests/slow/test_sharding.py in a subprocess with 4 host CPU devices.

Computes a meta-training step and a meta-test with the meta-batch / runs split
over all devices, saves the results and a checkpoint of the sharded state.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/slow/sharded_worker.py OUT
"""
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from anml_jax import checkpointing, evaluation, sharding  # noqa: E402
from tests.slow import sharding_case  # noqa: E402


def main(out):
  mesh = sharding.make_mesh()
  cfg, net, state, images = sharding_case.meta_setup()
  state, images = sharding.replicate((state, images), mesh)
  step = sharding_case.meta_step(cfg, net, mesh)
  hlo = step.lower(state, images).compile().as_text()
  new_state, metrics = step(state, images)
  _, grads, loss, _ = sharding_case.meta_gradient(cfg, net, mesh)(
      state.params, sharding_case.KEY, images)
  ck = checkpointing.Checkpointer(os.path.join(out, "ckpt"))
  ck.save(new_state, cfg.to_dict())
  ck.close()
  # four seeds in one program, one per device
  scfg, snet, sstate, simages = sharding_case.seeds_setup()
  sstate = sharding.shard_leading(sstate, mesh)
  sstate, smetrics = sharding_case.seeds_step(scfg, snet)(
      sstate, sharding.replicate(simages, mesh))
  seed_devices = len(jax.tree.leaves(sstate.params)[0].sharding.device_set)
  enet, eparams, omni, ecfg = sharding_case.eval_setup()
  res = evaluation.meta_test("anml", enet, eparams, omni, ecfg, log=lambda s: None,
                             mesh=mesh)
  np.savez(os.path.join(out, "sharded.npz"),
           **{f"p/{k}": v for k, v in sharding_case.flat(new_state.params).items()},
           **{f"g/{k}": v for k, v in sharding_case.flat(grads).items()},
           loss=np.asarray(loss), step_loss=np.asarray(metrics["loss"]),
           **{f"seeds/{k}": np.asarray(v) for k, v in smetrics.items()})
  with open(os.path.join(out, "sharded.json"), "w") as f:
    json.dump({"devices": jax.device_count(), "mesh": mesh.size,
               "all_reduce": "all-reduce" in hlo,
               "params_devices": len(jax.tree.leaves(new_state.params)[0].sharding.device_set),
               "seed_devices": seed_devices,
               "per_n": res["per_n"]}, f)


if __name__ == "__main__":
  main(sys.argv[1])
