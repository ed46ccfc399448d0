"""Orbax checkpoints of the meta-state, with architecture checks on restore.

A checkpoint holds two items: ``state`` (params, Adam state, PRNG key, step)
and ``meta`` (JSON: the config and the shape of every parameter). Restoring
compares the saved shapes with the expected ones first, so a checkpoint of
another architecture fails with a message that says what differs.
"""
import hashlib
import json
import os
import zipfile

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from anml_jax import configs, methods
from anml_jax.meta import MetaState, init_state, split_seeds, steps_taken


class CheckpointError(RuntimeError):
  """A checkpoint that is missing or does not fit; the message says why."""


def param_shapes(params) -> dict:
  """{'a/b/c': [shape...]} for every parameter leaf."""
  flat = traverse_util.flatten_dict(params, sep="/")
  return {k: list(np.shape(v)) for k, v in sorted(flat.items())}


class Checkpointer:
  """Keeps the last ``max_to_keep`` meta-states of a run under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, state: MetaState, config: dict) -> None:
    step = steps_taken(state)
    meta = {"config": config, "param_shapes": param_shapes(state.params),
            "step": step}
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state._asdict()),
        meta=ocp.args.JsonSave(meta)), force=True)
    self._mngr.wait_until_finished()

  def read_meta(self, step: int | None = None) -> dict:
    step = self._resolve(step)
    return self._read(step, meta=ocp.args.JsonRestore())["meta"]

  def step_dir(self, step: int | None = None) -> str:
    """The folder of the checkpoint at ``step`` (default: the latest)."""
    return os.path.join(self.directory, str(self._resolve(step)))

  def _read(self, step: int, **items):
    """Restores ``items`` of the checkpoint at ``step``; a checkpoint that
    cannot be read is a one-line CheckpointError naming it and the fix."""
    try:
      return self._mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # Orbax, TensorStore and JSON raise many types
      earlier = [s for s in self._mngr.all_steps() if s < step]
      fix = (f"move that folder away to resume from step {max(earlier)}"
             if earlier else "it is the only one: train again")
      detail = " ".join(str(e).split())[:300]
      raise CheckpointError(
          f"checkpoint {self.directory}/{step} cannot be read, it is truncated "
          f"or corrupt ({type(e).__name__}: {detail}); {fix}") from None

  def restore(self, template: MetaState, step: int | None = None) -> tuple[MetaState, dict]:
    """Restores into the structure of ``template`` (e.g. a fresh init_state).

    Raises:
      CheckpointError: no checkpoint, or its parameters differ in names or
        shapes from ``template``'s (another architecture or config).
    """
    step = self._resolve(step)
    meta = self.read_meta(step)
    check_shapes(meta["param_shapes"], param_shapes(template.params),
                 where=f"{self.directory}/{step}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    restored = self._read(step, state=ocp.args.StandardRestore(abstract))["state"]
    return MetaState(**restored), meta

  def _resolve(self, step):
    step = self.latest_step() if step is None else step
    if step is None or step not in self._mngr.all_steps():
      raise CheckpointError(
          f"no checkpoint{'' if step is None else f' at step {step}'} in "
          f"{self.directory}; train one with train.py --workdir first.")
    return step

  def close(self):
    self._mngr.close()


def check_shapes(saved: dict, expected: dict, where: str) -> None:
  """Raises CheckpointError listing what differs between two shape maps."""
  if saved == expected:
    return
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  changed = sorted(k for k in set(saved) & set(expected) if saved[k] != expected[k])
  lines = [f"checkpoint {where} is of another architecture than the model "
           "being built:"]
  for k in changed[:5]:
    lines.append(f"  {k}: saved {saved[k]}, expected {expected[k]}")
  if missing:
    lines.append(f"  missing in checkpoint: {', '.join(missing[:5])}")
  if extra:
    lines.append(f"  not in this model: {', '.join(extra[:5])}")
  lines.append("Build the model with the config the checkpoint was trained with "
               "(its config.json / --config), or point to a "
               "checkpoint of this architecture.")
  raise CheckpointError("\n".join(lines))


def export_params(run: str, path: str, seed: int | None = None) -> dict:
  """Writes the meta-parameters of a run (latest checkpoint) to one
  compressed ``.npz`` for sharing: parameters only (no optimiser state), the
  output layer left out (the meta-test re-draws it before learning), plus
  the run's config and step. :func:`load_run` reads it back.

  ``seed``: which seed of a run of several (``cfg.seeds`` > 1) to write, as
  a one-seed run of it; None for a one-seed run.

  Returns {'path', 'bytes', 'step'}.
  """
  cfg, net, params, step = load_run(run)
  by_seed = {c.seed: (c, p) for c, p in split_seeds(cfg, params)}
  if cfg.seeds > 1 or seed is not None:
    if seed not in by_seed:
      raise CheckpointError(f"{run} trained seeds {sorted(by_seed)}: pass seed= one "
                            f"of them (got {seed})")
    cfg, params = by_seed[seed]
  head = "/".join(net.head_path)
  flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(
      jax.device_get(params), sep="/").items() if not k.startswith(head + "/")}
  meta = {"config": cfg.to_dict(), "step": int(step), "left_out": head}
  np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **flat)
  return {"path": path, "bytes": os.path.getsize(path), "step": int(step)}


def _read_npz(path: str) -> tuple[dict, dict]:
  """(meta, {name: array}) of a parameter file; a truncated or corrupt file
  is a one-line CheckpointError naming it."""
  try:
    with np.load(path) as f:
      if "__meta__" not in f:
        raise CheckpointError(f"{path} is not a parameter file written by "
                              "checkpointing.export_params (no __meta__ entry)")
      meta = json.loads(str(f["__meta__"]))
      flat = {k: f[k] for k in f.files if k != "__meta__"}
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    detail = " ".join(str(e).split())[:200]
    raise CheckpointError(
        f"{path} cannot be read, it is truncated or corrupt ({type(e).__name__}: "
        f"{detail}); copy it again, or export it again from its run with "
        "checkpointing.export_params") from None
  return meta, flat


def _load_npz(path: str, method: str | None):
  meta, flat = _read_npz(path)
  cfg = _config(meta["config"], path, method)
  net = methods.network(cfg)
  fresh = traverse_util.flatten_dict(net.init(jax.random.key(cfg.seed)), sep="/")
  left_out = meta["left_out"]
  expected = {k: v for k, v in fresh.items() if not k.startswith(left_out + "/")}
  check_shapes(param_shapes(traverse_util.unflatten_dict(flat, sep="/")),
               param_shapes(traverse_util.unflatten_dict(expected, sep="/")), path)
  params = traverse_util.unflatten_dict(
      {**fresh, **{k: jax.numpy.asarray(v) for k, v in flat.items()}}, sep="/")
  return cfg, net, params, meta["step"]


def _config(saved: dict, path: str, method: str | None):
  try:
    cfg = configs.from_dict(saved)
  except ValueError as e:
    raise CheckpointError(f"{path}: {e}") from None
  if method and method != cfg.method:
    raise CheckpointError(
        f"{path} is a run of {cfg.method}, not of {method}; drop --method or "
        "point to a checkpoint of that method.")
  return cfg


def load_run(path: str, method: str | None = None):
  """The meta-parameters of a run folder written by train.py (or of its
  ``checkpoints/``) at its latest checkpoint, or of a ``.npz`` written by
  :func:`export_params` (whose left-out output layer is freshly drawn).

  Returns ``(config, network, params, step)``; the params of a run of
  several seeds are stacked (:func:`meta.split_seeds` splits them). Raises
  CheckpointError if ``method`` is given and the run is of another method,
  if the parameters do not fit the architecture their config describes, or
  if the file cannot be read.
  """
  if path.endswith(".npz"):
    if not os.path.isfile(path):
      raise CheckpointError(f"{path} not found: give a file written by "
                            "checkpointing.export_params, or a run folder")
    cfg, net, params, step = _load_npz(path, method)
  else:
    ck = Checkpointer(_checkpoint_dir(path))
    try:
      cfg = _config(ck.read_meta()["config"], path, method)
      net = methods.network(cfg)
      state, m = ck.restore(init_state(cfg, net, methods.get(cfg.method).optimizer))
    finally:
      ck.close()
    params, step = state.params, m["step"]
  check_finite(params, path)
  return cfg, net, params, step


def _checkpoint_dir(path: str) -> str:
  ckdir = os.path.join(path, "checkpoints")
  return ckdir if os.path.isdir(ckdir) else path


def check_finite(params, where: str) -> None:
  """Raises CheckpointError naming the parameters of ``where`` that hold a
  NaN or an infinity."""
  bad = [k for k, v in traverse_util.flatten_dict(params, sep="/").items()
         if not np.isfinite(np.asarray(v)).all()]
  if bad:
    raise CheckpointError(
        f"{where} holds non-finite parameters ({', '.join(sorted(bad)[:3])}"
        f"{', ...' if len(bad) > 3 else ''}); it was saved from a diverged run: "
        "use an earlier checkpoint")


def fingerprint(path: str) -> str:
  """sha256 (hex) of what :func:`load_run` reads at ``path``: of a parameter
  file, the file's (as ``sha256sum``); of a run folder, every file of its
  latest checkpoint, each relative path then its contents, in path order.
  Two records with one fingerprint evaluated the same weights."""
  if path.endswith(".npz"):
    return _sha256([path])
  ck = Checkpointer(_checkpoint_dir(path))
  try:
    root = ck.step_dir()
  finally:
    ck.close()
  files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
  return _sha256(files, root)


def _sha256(files, root: str | None = None) -> str:
  h = hashlib.sha256()
  for full in files:
    if root is not None:
      h.update(os.path.relpath(full, root).encode() + b"\0")
    with open(full, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
  return h.hexdigest()
