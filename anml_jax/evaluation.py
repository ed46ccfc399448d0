"""The meta-test driver: learning-rate search, final runs, result records."""
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import configs, continual, data, learners
from anml_jax.data import ClassSplit
from anml_jax.models import Network, check_input
from anml_jax.reporting import Results, ResultsRow
from anml_jax.results.record import SCHEMA_VERSION


def _summary(res: continual.StreamResult) -> dict:
  tr, te = np.asarray(res.train[:, 0]), np.asarray(res.test[:, 0])
  return {"train_mean": float(tr.mean()), "train_std": float(tr.std()),
          "test_mean": float(te.mean()), "test_std": float(te.std()),
          "train_runs": tr.tolist(), "test_runs": te.tolist()}


def fits_dataset(net: Network, dataset: ClassSplit, ecfg) -> None:
  """Raises ValueError unless ``dataset``'s images are ``net``'s input and
  each class keeps a drawing to hold out after ``ecfg.train_per_class``."""
  check_input(net, dataset.image_shape)
  if ecfg.train_per_class >= dataset.drawings:
    raise ValueError(f"bad eval config: train_per_class={ecfg.train_per_class} leaves "
                     f"none of a class's {dataset.drawings} drawings to test: lower it")


def meta_test(method: str, net: Network, params, dataset: ClassSplit, ecfg,
              log: Callable[[str], None] = print,
              on_update: Callable[[dict], None] | None = None,
              mesh=None, source: dict | None = None,
              done: Results | None = None) -> Results:
  """Runs the meta-test protocol ``ecfg`` for every N in ``ecfg.schedule``.

  For each N: (1) learning-rate search: ``search_runs`` streams of N classes
  of the meta-training (background) set, every lr in ``ecfg.lrs``, scored on
  the held-out drawings of those classes; the most voted lr wins; (2)
  ``runs`` streams of N unseen evaluation-set classes with that lr, scored on
  their training drawings (train) and held-out drawings (test). Evaluation-set
  images never influence the lr.

  ``ecfg.learner`` names the learner (:mod:`learners`): 'adam' re-learns the
  parameters ``ecfg.finetune`` names (empty: the method's registry entry),
  one image per step; a closed-form head learns the classifier on the fixed
  features (``ecfg.features``) instead, its regulariser searched as the lr
  is. The record's rows hold the chosen value as ``hyper`` (older records:
  ``lr``), named by the record's ``hyper_name``.
  ``ecfg.oracle`` learns each stream's images in a random
  order (i.i.d.) instead of class by class: the upper bound the sequential
  result is compared with. ``mesh`` (:func:`sharding.make_mesh`) splits the
  runs over its devices.

  When only the head is re-learnt, every image's features are computed once
  and the streams run on :func:`models.head_only` (the same learner; equal to
  running the whole network up to float rounding).

  Args:
    source: what was evaluated (checkpoint, checkpoint_sha256,
      checkpoint_step, model_config, provenance), copied into the record.
    done: the record of an interrupted evaluation of the same checkpoint and
      protocol: its N are kept as they are, not recomputed, and the others
      computed with the numbers an uninterrupted evaluation draws.

  Returns:
    the :class:`reporting.Results` record; ``on_update`` gets it after every
    N (so an interrupted evaluation keeps what it finished).
  """
  configs.validate_eval(ecfg)
  oracle = bool(ecfg.oracle)
  order = lambda a, side: data.order_drawings(np.asarray(a), ecfg.split,
                                              (ecfg.split_seed, side))
  fits_dataset(net, dataset, ecfg)
  bg = jnp.asarray(order(dataset.background[:ecfg.search_pool], 0))
  ev = jnp.asarray(order(dataset.evaluation[:ecfg.class_pool], 1))
  t0 = time.perf_counter()   # the record's seconds include the features
  learner = learners.get(ecfg.learner)
  finetune = learner.relearnt(method, net, ecfg)
  mesh = mesh if learner.shards else None
  streams = learner.streams(net, params, finetune, bg, ev, ecfg, mesh)
  grid = learner.grid(ecfg)
  devices = 1 if mesh is None else mesh.size

  rng = np.random.default_rng(ecfg.seed)
  lrs = jnp.asarray(grid, jnp.float32)
  out = Results(schema=SCHEMA_VERSION, method=method, finetune=list(finetune), oracle=oracle,
                protocol=ecfg.to_dict(), hyper_name=learner.hyper, per_n=[], forgetting=None,
                backend=jax.default_backend(),
                device=str(jax.devices()[0].device_kind), devices=devices,
                **(source or {}))
  finished, earlier_seconds = set(), 0.0
  if done is not None:
    earlier_seconds = done.get("seconds", 0.0)
    out = Results(**{**done, "resumed": [*done.get("resumed", []),
                                         (source or {}).get("provenance")]})
    finished = {row["classes"] for row in done["per_n"]}
  for n in ecfg.schedule:
    tn = time.perf_counter()
    keys = jax.random.split(jax.random.key(ecfg.seed * 1000 + n),
                            ecfg.search_runs + ecfg.runs)
    # Both samples are drawn for every N, finished or not, so that a resumed
    # evaluation draws the classes an uninterrupted one does.
    cls_search = continual.sample_classes(rng, ecfg.search_pool, n, ecfg.search_runs)
    cls = continual.sample_classes(rng, ecfg.class_pool, n, ecfg.runs)
    if n in finished:
      log(f"N={n}: kept from the interrupted evaluation")
      continue
    search = streams(keys[:ecfg.search_runs], lrs, jnp.asarray(cls_search), "search")
    hyper, votes = continual.choose_lr(grid, np.asarray(search.test))
    res = streams(keys[ecfg.search_runs:], jnp.asarray([hyper], jnp.float32),
                  jnp.asarray(cls), "final")
    row = ResultsRow(classes=n, hyper=hyper, hyper_votes=votes, **_summary(res),
                     search_test_mean_per_hyper=np.asarray(search.test).mean(0).tolist(),
                     seconds=time.perf_counter() - tn)
    out["per_n"] = sorted([*out["per_n"], row], key=lambda r: r["classes"])
    if out["forgetting"] is not None:    # a longer stream's replaces it: kept
      out["earlier"] = [*out.get("earlier", []),
                        {"forgetting": out["forgetting"], "seconds": out["seconds"]}]
    out["forgetting"] = {"classes": n,
                  "test_per_class_mean": np.asarray(res.test_per_class[:, 0]).mean(0).tolist(),
                  "train_per_class_mean": np.asarray(res.train_per_class[:, 0]).mean(0).tolist()}
    name = method + (" oracle" if oracle else "")
    log(f"{name:>9s} N={n:4d} {learner.hyper}={hyper:<8g} train {100 * row['train_mean']:5.1f} "
        f"± {100 * row['train_std']:4.1f}  test {100 * row['test_mean']:5.1f} "
        f"± {100 * row['test_std']:4.1f}  ({row['seconds']:.1f}s)")
    out["seconds"] = earlier_seconds + time.perf_counter() - t0
    if on_update is not None:
      on_update(out)
  return out
