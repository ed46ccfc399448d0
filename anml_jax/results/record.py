"""A results record: one ``results.json``, written by ``evaluate.py`` and never
edited.

Its fields are :class:`anml_jax.reporting.Results`'. This module defines, once,
what is read from a record without running anything (no JAX import):

* its schema version (:data:`SCHEMA_VERSION`; a record without ``schema`` is
  version 1), refused with a one-line error when it is newer than this code;
* its identity (:func:`describe`): the fields a table row matches, and
  :data:`RESUME_KEYS`, what must be equal for one command to continue a
  record another began;
* :func:`run_id`: a short name of the evaluation it holds, equal for two
  records of the same checkpoint, method and protocol.

Versions: 1, up to 2026-12-07: each row names its chosen hyperparameter
``lr`` (a closed-form head's regulariser too). 2: rows name it ``hyper``
(with ``hyper_votes``, ``search_test_mean_per_hyper``) and the record names
what it is, ``hyper_name``.
"""
import hashlib
import json
import os

SCHEMA_VERSION = 2
# The methods whose meta-training could reset the trajectory's output rows:
# records saved before ``zap`` name that reset ``reset_head_rows``
# (anml_jax/methods.py: the methods whose zaps include 'trajectory'; a test
# checks the two agree).
TRAJECTORY_ZAP_METHODS = ("anml", "asb", "oml")
# What must be equal for a record to be continued by another command.
RESUME_KEYS = ("method", "finetune", "oracle", "checkpoint_sha256", "checkpoint_step",
               "model_config", "protocol")


def version(record: dict, where: str = "a record") -> int:
  """The schema version of ``record``; ValueError for one this code cannot
  read, naming ``where`` and the fix."""
  v = record.get("schema", 1)
  if not isinstance(v, int) or not 1 <= v <= SCHEMA_VERSION:
    raise ValueError(f"{where} has schema version {v!r}; this anml-jax reads versions 1 to "
                     f"{SCHEMA_VERSION}: update anml-jax (git pull) to read it")
  return v


def hyper(row: dict) -> float:
  """The chosen hyperparameter of one row (``lr`` in version 1)."""
  return row["hyper"] if "hyper" in row else row["lr"]


def _zap(model: dict) -> str:
  if "zap" in model or "method" not in model:
    return model.get("zap", "none")
  reset = model.get("reset_head_rows", False)
  return "trajectory" if reset and model["method"] in TRAJECTORY_ZAP_METHODS else "none"


def describe(record: dict) -> dict:
  """What an evaluation measured, as the fields a table row matches:
  method, seed (of meta-training; None for an untrained network),
  first_order, gate (ANML's gate in use), zap (the reset of meta-training,
  read from the older ``reset_head_rows`` too), zap_scale, rotations (turns
  of each training class), shift (pixels pretraining moved its images by),
  init (the file training started from, its base name; None: a fresh
  initialisation), steps, finetune ('+'-joined), oracle, learner, features,
  split (of the drawings at meta-test), views (of each image, closed-form
  heads), stream_classes ('evaluation', the meta-test, or 'validation', the
  held-out meta-training alphabets), checkpoint_sha256 (None where the
  record predates it)."""
  model = record.get("model_config") or {}
  protocol = record.get("protocol") or {}
  steps = record.get("checkpoint_step") or 0
  return {"method": record["method"],
          "seed": model.get("seed") if steps else None,
          "first_order": bool(model.get("first_order", False)),
          "gate": bool((model.get("model") or {}).get("gate", True)),
          "zap": _zap(model),
          "zap_scale": model.get("zap_scale", "row"),
          "rotations": model.get("rotations", 1),
          "shift": model.get("shift", 0),
          "init": os.path.basename(model["init_params"]) if model.get("init_params") else None,
          "steps": steps,
          "finetune": "+".join(record["finetune"]),
          "oracle": bool(record.get("oracle")),
          "learner": protocol.get("learner", "adam"),
          "features": protocol.get("features", "head_input"),
          "split": protocol.get("split", "drawer"),
          "views": protocol.get("views", 1),
          "stream_classes": protocol.get("stream_classes", "evaluation"),
          "checkpoint_sha256": record.get("checkpoint_sha256")}


def run_id(record: dict) -> str:
  """12 hex digits naming the evaluation: a hash of the record's
  :data:`RESUME_KEYS` (the checkpoint, what was re-learnt, the protocol)."""
  key = json.dumps({k: record.get(k) for k in RESUME_KEYS}, sort_keys=True, default=str)
  return hashlib.sha256(key.encode()).hexdigest()[:12]
