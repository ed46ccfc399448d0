"""Data parallelism over devices: a 1-D mesh, named shardings, placement.

The meta-batch (meta-training) and the runs (meta-test) are independent
examples, so they are split over the mesh axis ``'batch'`` while parameters,
optimiser state and the dataset are replicated. ``jit`` then partitions the
vmapped computation and inserts the all-reduce of the meta-gradient mean
(GSPMD); no code path differs between one device and many.

Multi-host: call :func:`initialize_distributed` first on every process; the
mesh then spans every process's devices and :func:`replicate` builds global
arrays from the identical host copies each process holds.
"""
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named ``'batch'`` over ``devices`` (default: all devices of
  all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh, the other axes whole."""
  return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of ``tree`` (host or device arrays, the same on every
  process) fully replicated on ``mesh``."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def shard_leading(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of ``tree`` with its leading axis (e.g. the seeds of a
  stacked state) split over ``mesh``; one process."""
  return jax.device_put(tree, batch_sharded(mesh))


def constrain_batch(tree: Any, mesh: Mesh | None) -> Any:
  """Inside ``jit``: asks for the leading axis of every leaf to be split over
  the mesh. A no-op when ``mesh`` is None or has one device."""
  if mesh is None or mesh.size == 1:
    return tree
  return jax.lax.with_sharding_constraint(tree, batch_sharded(mesh))


def check_divisible(size: int, mesh: Mesh | None, what: str) -> None:
  """Raises ValueError unless ``size`` splits evenly over ``mesh``."""
  if mesh is not None and size % mesh.size:
    raise ValueError(
        f"{what}={size} does not split over {mesh.size} devices; use a multiple "
        f"of {mesh.size}, or run on one device (--config.shard=off).")


def mesh_for_batch(mode: str, batch: int, what: str) -> Mesh | None:
  """The mesh a run uses: ``mode`` 'off' -> None (one device); 'on' -> all
  devices (ValueError if ``batch`` does not split); 'auto' -> all devices when
  there are several and ``batch`` splits over them, else None."""
  n = jax.device_count()
  if mode == "off" or n == 1 or (mode == "auto" and batch % n):
    return None
  mesh = make_mesh()
  check_divisible(batch, mesh, what)
  return mesh


def to_host(tree: Any) -> Any:
  """numpy copies of (possibly multi-process, replicated) arrays."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(one, tree)


def initialize_distributed(coordinator: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` for multi-host runs.

  With no arguments JAX detects the cluster (SLURM, Cloud TPU, Kubernetes
  jobs); otherwise pass the coordinator ``host:port``, the process count and
  this process's id, the same coordinator on every process.
  """
  # Cross-process collectives for CPU devices (ignored by GPU/TPU backends).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator,
                             num_processes=num_processes, process_id=process_id)
