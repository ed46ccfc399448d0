"""Multi-device: the meta-batch and the meta-test runs split over 4 host CPU
devices (a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4),
and the meta-batch split over two processes on localhost (jax.distributed, 2
devices each), give the single-device results; the checkpoints they write
restore here, in one process on one device."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from anml_jax import checkpointing, evaluation, meta, sharding
from tests.conftest import REPO
from tests.slow import sharding_case


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
  """Two processes on localhost, 2 CPU devices each (tests/slow/distributed_worker.py)."""
  out = tmp_path_factory.mktemp("distributed")
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  port = str(_free_port())
  worker = os.path.join(REPO, "tests", "slow", "distributed_worker.py")
  procs = [subprocess.Popen([sys.executable, worker, str(i), port, str(out)], env=env, cwd=REPO,
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  with open(out / "distributed.json") as f:
    info = json.load(f)
  return out, info, np.load(out / "distributed.npz")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharded")
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "slow", "sharded_worker.py"),
                         str(out)], env=env, capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "sharded.json") as f:
    info = json.load(f)
  return out, info, np.load(out / "sharded.npz")


@pytest.fixture(scope="module")
def single_device():
  """(loss, flat meta-gradient, step loss) of the worker's case on this
  process's one device: computed once for both workers."""
  assert jax.device_count() == 1
  cfg, net, state, images = sharding_case.meta_setup()
  _, grads, loss, _ = sharding_case.meta_gradient(cfg, net)(
      state.params, sharding_case.KEY, images)
  _, metrics = sharding_case.meta_step(cfg, net)(state, images)
  return loss, sharding_case.flat(grads), metrics["loss"]


@pytest.mark.slow
def test_worker_really_ran_on_four_devices(sharded):
  _, info, _ = sharded
  assert info["devices"] == 4 and info["mesh"] == 4
  assert info["params_devices"] == 4          # state replicated on all 4
  assert info["all_reduce"]                   # the meta-gradient is reduced across devices


@pytest.mark.slow
def test_sharded_meta_gradient_equals_single_device(sharded, single_device):
  _assert_single_device_results(sharded[2], single_device)


@pytest.mark.slow
def test_seeds_split_over_four_devices_give_the_one_device_metrics(sharded):
  _, info, arrays = sharded
  assert info["seed_devices"] == 4          # the seed axis is split, one seed per device
  cfg, net, state, images = sharding_case.seeds_setup()
  _, metrics = sharding_case.seeds_step(cfg, net)(state, images)
  for k in ("loss", "grad_norm", "nm_grad_norm"):
    assert arrays[f"seeds/{k}"].shape == (sharding_case.SEEDS,)
    np.testing.assert_allclose(arrays[f"seeds/{k}"], metrics[k], rtol=1e-5, err_msg=k)


@pytest.mark.slow
def test_two_processes_give_the_single_process_meta_gradient(distributed, single_device):
  _, info, arrays = distributed
  assert info == {"processes": 2, "devices": 4, "local_devices": 2, "mesh": 4}
  _assert_single_device_results(arrays, single_device)


@pytest.mark.slow
def test_checkpoint_of_two_processes_restores_in_one(distributed):
  _assert_checkpoint_restores(*distributed)


def _assert_single_device_results(arrays, single_device):
  """``arrays`` (a worker's meta-gradient, loss and step loss) equal what one
  device computes here (``single_device``), up to float32 summation order."""
  loss, single, step_loss = single_device
  np.testing.assert_allclose(arrays["loss"], loss, rtol=1e-6)
  assert len(single) == len([k for k in arrays.files if k.startswith("g/")])
  # float32 summation-order noise of a second-order gradient: ~1e-6 of its
  # largest entry here; a lost or doubled device's share would be ~1e-1.
  scale = max(float(np.abs(g).max()) for g in single.values())
  for k, v in single.items():
    np.testing.assert_allclose(arrays[f"g/{k}"], v, rtol=1e-4, atol=1e-5 * scale,
                               err_msg=k)
  # the whole step: the same meta-loss (Adam's first update, lr * g / |g|, is
  # not compared: it turns the ~1e-9 summation noise of gradients that are
  # zero in exact arithmetic, e.g. conv biases before a norm, into +-lr)
  np.testing.assert_allclose(arrays["step_loss"], step_loss, rtol=1e-6)


@pytest.mark.slow
def test_sharded_meta_test_equals_single_device(sharded):
  _, info, _ = sharded
  net, params, omni, ecfg = sharding_case.eval_setup()
  res = evaluation.meta_test("anml", net, params, omni, ecfg, log=lambda s: None)
  assert len(info["per_n"]) == len(res["per_n"])
  for a, b in zip(info["per_n"], res["per_n"]):    # exact logits: exact results
    assert a["hyper"] == b["hyper"] and a["hyper_votes"] == b["hyper_votes"]
    assert len(a["test_runs"]) == ecfg.runs       # the padding runs were dropped
    assert a["train_runs"] == b["train_runs"] and a["test_runs"] == b["test_runs"]


@pytest.mark.slow
def test_sharded_checkpoint_restores_on_one_device(sharded):
  _assert_checkpoint_restores(*sharded)


def _assert_checkpoint_restores(out, info, arrays):
  """The worker's checkpoint (after one step) restores here, on one device,
  to the parameters the worker saved."""
  del info
  cfg, net, _, _ = sharding_case.meta_setup()
  ck = checkpointing.Checkpointer(os.path.join(out, "ckpt"))
  state, m = ck.restore(meta.init_state(cfg, net))
  ck.close()
  assert int(state.step) == 1 and m["step"] == 1
  for k, v in sharding_case.flat(state.params).items():
    assert len(jax.device_get(v).shape) == len(arrays[f"p/{k}"].shape)
    np.testing.assert_array_equal(v, arrays[f"p/{k}"], err_msg=k)
  leaf = jax.tree.leaves(state.params)[0]
  assert leaf.sharding.device_set == {jax.devices()[0]}


def test_mesh_rejects_a_batch_that_does_not_split():
  mesh = sharding.make_mesh(jax.devices() * 1)
  sharding.check_divisible(3, mesh, "meta_batch")   # one device: always splits
  with pytest.raises(ValueError, match="meta_batch=3 does not split over 2 devices"):
    sharding.check_divisible(3, _FakeMesh(2), "meta_batch")


class _FakeMesh:
  def __init__(self, size):
    self.size = size
