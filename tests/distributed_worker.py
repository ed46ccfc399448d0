"""Run by tests/test_sharding.py as two processes on localhost, each with 2
host CPU devices: jax.distributed (coordinator on 127.0.0.1, gloo
collectives), each process building the data itself, one meta-gradient and
one meta-step with the meta-batch split over the 4 devices of both, and a
checkpoint written by the pair.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python tests/distributed_worker.py PROCESS_ID PORT OUT
"""
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anml_jax import checkpointing, sharding  # noqa: E402


def main(process_id, port, out):
  sharding.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
  from tests import sharding_case  # after: it makes a PRNG key at import
  mesh = sharding.make_mesh()
  cfg, net, state, images = sharding_case.meta_setup()
  state, images = sharding.replicate((state, images), mesh)
  _, grads, loss, _ = sharding_case.meta_gradient(cfg, net, mesh)(
      state.params, sharding_case.KEY, images)
  new_state, metrics = sharding_case.meta_step(cfg, net, mesh)(state, images)
  ck = checkpointing.Checkpointer(os.path.join(out, "ckpt"))
  ck.save(new_state, cfg.to_dict())
  ck.close()
  host = sharding.to_host
  if jax.process_index() == 0:
    np.savez(os.path.join(out, "distributed.npz"),
             **{f"p/{k}": v for k, v in sharding_case.flat(host(new_state.params)).items()},
             **{f"g/{k}": v for k, v in sharding_case.flat(host(grads)).items()},
             loss=host(loss), step_loss=host(metrics["loss"]))
    with open(os.path.join(out, "distributed.json"), "w") as f:
      json.dump({"processes": jax.process_count(), "devices": jax.device_count(),
                 "local_devices": jax.local_device_count(), "mesh": mesh.size}, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
