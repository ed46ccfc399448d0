"""Run by tests/slow/test_sharding.py as two processes on localhost, each with 2
host CPU devices: jax.distributed (coordinator on 127.0.0.1, gloo
collectives), each process building the data itself, one meta-gradient and
one meta-step with the meta-batch split over the 4 devices of both, and a
checkpoint written by the pair.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python tests/slow/distributed_worker.py PROCESS_ID PORT OUT
"""
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from anml_jax import checkpointing, sharding  # noqa: E402


def barrier(out: str, name: str, timeout_s: float = 600) -> None:
  """Both processes wait here until both arrive (marker files in ``out``).
  The first use of a gloo communicator gives up when the other process is
  over 30 s late, which the two processes' compile times on a busy 2-core
  machine can exceed; so each phase starts together."""
  open(os.path.join(out, f"{name}.{jax.process_index()}"), "w").close()
  deadline = time.monotonic() + timeout_s
  while not all(os.path.exists(os.path.join(out, f"{name}.{i}"))
                for i in range(jax.process_count())):
    if time.monotonic() > deadline:
      raise TimeoutError(f"the other process did not reach {name!r} in {timeout_s} s")
    time.sleep(0.1)


def main(process_id, port, out):
  sharding.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
  from tests.slow import sharding_case  # after: it makes a PRNG key at import
  mesh = sharding.make_mesh()
  cfg, net, state, images = sharding_case.meta_setup()
  state, images = sharding.replicate((state, images), mesh)
  gradient = sharding_case.meta_gradient(cfg, net, mesh).lower(
      state.params, sharding_case.KEY, images).compile()
  step = sharding_case.meta_step(cfg, net, mesh).lower(state, images).compile()
  barrier(out, "compiled")
  _, grads, loss, _ = gradient(state.params, sharding_case.KEY, images)
  new_state, metrics = step(state, images)
  barrier(out, "computed")
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
