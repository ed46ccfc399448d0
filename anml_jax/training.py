"""The meta-training loop: jitted chunks of steps, logging, checkpoints.

I/O lives here and in the entry points; the math is in ``meta``.
"""
import json
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import checkpointing, configs, data, meta, methods, models, reporting, sharding


class TrainingDiverged(RuntimeError):
  """A non-finite loss; the last good checkpoint is kept."""


def device_peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def host_peak_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MetricsWriter:
  """JSON lines (metrics.jsonl) plus TensorBoard event files (tb/).

  ``start``: the step the run (re)starts from. Lines of later steps, written
  by an interrupted run after its last checkpoint, are dropped: the resumed
  run writes them again, so each step appears once.
  """

  def __init__(self, workdir: str, start: int = 0):
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.isfile(path):
      with open(path) as f:
        kept = [l for l in f if l.strip() and json.loads(l)["step"] <= start]
      with open(path, "w") as f:
        f.writelines(kept)
    self._f = open(path, "a")
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    except ImportError:
      self._tb = None

  def write(self, step: int, scalars: dict):
    self._f.write(json.dumps({"step": step, **scalars}) + "\n")
    self._f.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        for i, x in enumerate(v) if isinstance(v, list) else ((None, v),):
          self._tb.add_scalar(f"train/{k}" + ("" if i is None else f"/{i}"), x, step)

  def close(self):
    self._f.close()
    if self._tb is not None:
      self._tb.close()


def warm_start(cfg, net, state: meta.MetaState) -> meta.MetaState:
  """``state`` with its parameters replaced by those of ``cfg.init_params``
  (an exported .npz or a run folder; every seed of a stacked state gets
  them) and a fresh optimiser state; its PRNG stream and step are kept.
  Raises CheckpointError if the file's parameters do not fit ``net``."""
  _, _, params, _ = checkpointing.load_run(cfg.init_params)
  want = jax.tree.map(jnp.shape, meta.split_seeds(cfg, state.params)[0][1])
  got = jax.tree.map(jnp.shape, params)
  if want != got:
    raise checkpointing.CheckpointError(
        f"init_params={cfg.init_params}: its parameters do not fit the network "
        f"of this config ({cfg.method}, model {cfg.model.to_dict()}); give the "
        "same model sizes as the run that made it, or another file")
  init = methods.get(cfg.method).optimizer(cfg).init
  if cfg.seeds > 1:
    params = jax.tree.map(lambda a: jnp.stack([a] * cfg.seeds), params)
    init = jax.vmap(init)
  return state._replace(params=params, opt_state=init(params))


def train(cfg, workdir: str, images: np.ndarray, *, resume: bool = False,
          progress: bool = True, provenance: dict | None = None) -> meta.MetaState:
  """Meta-trains (or pretrains) until ``cfg.steps``; returns the final state.

  Args:
    cfg: a validated config (see ``configs``).
    workdir: run folder: config.json, metrics.jsonl, tb/, checkpoints/.
    images: (C, D, H, W, 1) meta-training images (C >= num_train_classes;
      the first num_train_classes are used, times ``cfg.rotations`` turns),
      uint8 (kept so on the device, normalised in the step) or float; D and
      (H, W, 1) are checked against the config before anything is written.
    resume: continue from the latest checkpoint in ``workdir``.
    provenance: a ``provenance.record``, appended to provenance.jsonl with
      the step the run starts from.

  With ``cfg.seeds`` = K > 1 the K seeds of :func:`meta.seed_list` train in
  one program (a vmapped step over a stacked state; metrics.jsonl gets each
  metric's mean and its per-seed means as ``KEY_per_seed``). With several
  devices (``cfg.shard``) the meta-batch (one seed) or the seeds are split
  over all of them, the rest replicated; with several processes (after
  ``sharding.initialize_distributed``) process 0 writes the logs and every
  process takes part in checkpointing.
  """
  configs.validate(cfg)
  method = methods.get(cfg.method)
  if not method.trained:
    raise ValueError(f"method {cfg.method!r} is not trained ({method.description}); "
                     "evaluate it with evaluate.py --config instead")
  configs.fits_drawings(cfg, images.shape[1])
  if images.shape[0] < cfg.num_train_classes:
    held = (f" once validation_alphabets={tuple(cfg.validation_alphabets)} are held out"
            if cfg.validation_alphabets else "")
    raise ValueError(f"num_train_classes={cfg.num_train_classes} but the data "
                     f"has only {images.shape[0]} meta-training classes{held}; set "
                     f"--config.num_train_classes={images.shape[0]} or fewer")
  seeds = int(cfg.seeds)
  if seeds > 1 and jax.process_count() > 1:
    raise ValueError(f"seeds={seeds}: several seeds train in one process; run one "
                     "seed per job across hosts (--config.seed=S)")
  # One seed: the meta-batch is split over the devices; several: the seeds.
  if seeds > 1:
    mesh = sharding.mesh_for_batch(cfg.shard, seeds, "seeds")
  elif method.batch_key is not None:
    mesh = sharding.mesh_for_batch(cfg.shard, cfg[method.batch_key], method.batch_key)
  else:
    mesh = None
  main_process = jax.process_index() == 0
  net = methods.network(cfg)
  models.check_input(net, images.shape[2:])
  state = meta.init_state(cfg, net, method.optimizer)
  if cfg.init_params and not resume:     # before anything is written
    state = warm_start(cfg, net, state)
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    cfg.keep_checkpoints)
  place = lambda st: (st if mesh is None else sharding.replicate(st, mesh) if seeds == 1
                      else sharding.shard_leading(st, mesh))
  state = place(state)
  if ckpt.latest_step() is not None:
    if not resume:
      raise FileExistsError(
          f"{workdir} already holds a run (checkpoint at step "
          f"{ckpt.latest_step()}); pass --resume to continue it, or choose "
          "another --workdir. Nothing was changed.")
    state, _ = ckpt.restore(state)
    state = place(state)
  if main_process:
    reporting.atomic_write(os.path.join(workdir, "config.json"),
                           cfg.to_json_best_effort(indent=2))
    if provenance is not None:
      with open(os.path.join(workdir, "provenance.jsonl"), "a") as f:
        f.write(json.dumps({"start_step": meta.steps_taken(state),
                            **provenance}) + "\n")

  imgs = data.with_rotations(np.asarray(images[:cfg.num_train_classes]), cfg.rotations)
  imgs = (jax.device_put(jnp.asarray(imgs)) if mesh is None
          else sharding.replicate(imgs, mesh))
  step_fn = meta.over_seeds(method.make_step(cfg, net, mesh if seeds == 1 else None), seeds)
  validate = (jax.jit(meta.over_seeds(method.make_validation(cfg, net), seeds))
              if method.make_validation is not None and cfg.holdout_drawings else None)
  out_sharding = None if mesh is None or seeds > 1 else sharding.replicated(mesh)
  compiled = {}

  def chunk_for(n):
    if n not in compiled:
      t0 = time.perf_counter()
      fn = jax.jit(meta.make_train_chunk(step_fn, n), donate_argnums=0,
                   out_shardings=out_sharding)
      compiled[n] = fn.lower(state, imgs).compile()
      compiled[f"compile_s_{n}"] = time.perf_counter() - t0
    return compiled[n]

  start = meta.steps_taken(state)
  writer = MetricsWriter(workdir, start) if main_process else None
  bar = None
  if progress and main_process:
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=start, unit="step", dynamic_ncols=True)
  try:
    step = start
    while step < cfg.steps:
      n = min(cfg.log_every, cfg.steps - step)
      fn = chunk_for(n)
      before = step
      t0 = time.perf_counter()
      state, metrics = fn(state, imgs)
      metrics = sharding.to_host(metrics)
      dt = time.perf_counter() - t0
      bad = ~np.isfinite(metrics["loss"]) | ~np.isfinite(metrics["grad_norm"])
      if bad.any():
        first = before + int(np.argmax(bad.reshape(n, -1).any(1))) + 1
        last = ckpt.latest_step()
        raise TrainingDiverged(
            f"non-finite meta-loss at step {first}; stopped without saving. "
            f"The last good checkpoint (step {last}) is kept in "
            f"{ckpt.directory}. Lower meta_lr/inner_lr (e.g. --resume "
            "--config.meta_lr=...).")
      step = before + n
      scalars = {k: float(v.mean()) for k, v in metrics.items()}
      if seeds > 1:       # and each seed's mean over the chunk
        scalars.update({f"{k}_per_seed": v.reshape(n, seeds).mean(0).tolist()
                        for k, v in metrics.items()})
      scalars["steps_per_s"] = n / dt
      if f"compile_s_{n}" in compiled:
        scalars["compile_s"] = compiled.pop(f"compile_s_{n}")
      at_checkpoint = step % cfg.ckpt_every == 0 or step == cfg.steps
      if validate is not None and at_checkpoint:
        held = np.asarray(sharding.to_host(validate(state.params, imgs)))
        scalars["holdout_accuracy"] = float(held.mean())
        if seeds > 1:
          scalars["holdout_accuracy_per_seed"] = held.tolist()
      if writer is not None:
        writer.write(step, scalars)
      if bar is not None:
        bar.update(step - before)
        bar.set_postfix(loss=f"{scalars['loss']:.3f}",
                        acc=f"{scalars['accuracy']:.2f}")
      if at_checkpoint:
        ckpt.save(state, cfg.to_dict())
    summary = {"final_step": step, "host_peak_bytes": host_peak_bytes(),
               "device_peak_bytes": device_peak_bytes(),
               "backend": jax.default_backend(),
               "devices": 1 if mesh is None else mesh.size,
               "processes": jax.process_count()}
    if main_process:      # the weights this run ends with, as an evaluation names them
      summary["checkpoint_sha256"] = checkpointing.fingerprint(workdir)
      with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
  finally:
    if bar is not None:
      bar.close()
    if writer is not None:
      writer.close()
    ckpt.close()
  return state
