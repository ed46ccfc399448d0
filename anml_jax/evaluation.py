"""The meta-test driver: learning-rate search, final runs, result records."""
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import configs, continual, data, heads, methods, sharding
from anml_jax.data import ClassSplit
from anml_jax.learner import context_is_static
from anml_jax.models import Network, check_input, head_only, head_params
from anml_jax.reporting import Results, ResultsRow


def _summary(res: continual.StreamResult) -> dict:
  tr, te = np.asarray(res.train[:, 0]), np.asarray(res.test[:, 0])
  return {"train_mean": float(tr.mean()), "train_std": float(tr.std()),
          "test_mean": float(te.mean()), "test_std": float(te.std()),
          "train_runs": tr.tolist(), "test_runs": te.tolist()}


def stream_eval_batch(eval_images: int, runs: int, lrs: int, devices: int = 1) -> int:
  """Per-stream prediction batch so that about ``eval_images`` images are in
  flight per device when ``runs`` x ``lrs`` streams run in parallel, the runs
  split over ``devices``. The memory of one meta-test call grows by about
  3.5 MB per image in flight at the paper's sizes, plus 0.06 to 0.1 GB per
  stream (bench/README.md)."""
  return max(1, eval_images // (-(-runs // devices) * lrs))


def _sharded_runs(evaluate: Callable, mesh) -> Callable:
  """Wraps ``evaluate`` so that its runs axis is split over ``mesh``: the runs
  are padded (repeating runs) to a multiple of the device count, the padding's
  results dropped."""
  if mesh is None:
    return evaluate

  def run(params, keys, lrs, classes, images, ctx):
    r = keys.shape[0]
    idx = np.arange(r + (-r) % mesh.size) % r
    keys, classes = jax.device_put((keys[idx], classes[idx]),
                                   sharding.batch_sharded(mesh))
    res = evaluate(params, keys, lrs, classes, images, ctx)
    return jax.tree.map(lambda a: a[:r], res)

  return run


def only_the_head(net: Network, finetune: Sequence[str]) -> bool:
  """True iff ``finetune`` re-learns exactly ``net``'s output layer, so the
  features of every image are fixed during the meta-test."""
  return tuple(finetune) == ("/".join(net.head_path),)


def stream_inputs(net: Network, params, finetune: Sequence[str], images: jax.Array,
                  frozen_features: bool = True):
  """What a stream evaluator over ``images`` (C, D, H, W, 1) runs on:
  ``(net, params, images, ctx)`` for :func:`continual.make_stream_evaluator`.

  * only the head re-learnt (and ``frozen_features``): the head alone
    (:func:`models.head_only`) on every image's features (C, D, F), computed
    once, batched;
  * the context's parameters frozen: the network on the images, with the
    context (C, D, F) computed once;
  * otherwise the network on the images, everything recomputed per step.
  """
  if frozen_features and only_the_head(net, finetune):
    return (head_only(net), head_params(params, net.head_path),
            continual.compute_features(net, params, images), None)
  if context_is_static(net, finetune):
    return net, params, images, continual.compute_context(net, params, images)
  return net, params, images, None


def relearnt(method: str, net: Network, ecfg) -> tuple:
  """The parameter prefixes the meta-test re-learns: ``ecfg.finetune``, else
  the method's (registry); a closed-form head replaces the output layer."""
  if ecfg.learner != "adam":
    return ("/".join(net.head_path),)
  return tuple(ecfg.finetune) or methods.get(method).finetune


def _adam_streams(net: Network, params, finetune, bg, ev, ecfg, mesh) -> Callable:
  """``streams(keys (R,), lrs (L,), classes (R, N), side) -> StreamResult``:
  Adam re-learning ``finetune``, one image per step (:mod:`continual`), on
  the background classes (side 'search') or the evaluation classes ('final')."""
  if mesh is not None:
    params, bg, ev = sharding.replicate((params, bg, ev), mesh)
  _, _, bg, ctx_bg = stream_inputs(net, params, finetune, bg)
  net, params, ev, ctx_ev = stream_inputs(net, params, finetune, ev)
  inputs = {"search": (bg, ctx_bg), "final": (ev, ctx_ev)}
  devices = 1 if mesh is None else mesh.size
  evaluators = {}

  def streams(keys, lrs, classes, side):
    b = stream_eval_batch(ecfg.eval_images, keys.shape[0], lrs.shape[0], devices)
    if b not in evaluators:
      evaluators[b] = _sharded_runs(jax.jit(continual.make_stream_evaluator(
          net, finetune_params=finetune, train_per_class=ecfg.train_per_class,
          eval_batch=b, iid=bool(ecfg.oracle))), mesh)
    return evaluators[b](params, keys, lrs, classes, *inputs[side])

  return streams


def closed_form_features(net: Network, params, images: jax.Array, which: str,
                         views: int = 1, batch: int = 512) -> jax.Array:
  """(C, D, H, W, 1) -> (C, D, V, d): what a closed-form head learns from,
  for each of an image's ``views`` (its translated copies,
  :data:`data.VIEW_SHIFTS`; V = ``views``): ``'head_input'`` (the input of
  ``net``'s output layer; ANML: the gated PLN features) or ``'context'``
  (ANML: the NM's output; OML: the RLN's). ``batch`` forward passes at a
  time (``batch // V`` images, all their views), written straight into the
  one (C, D, V, d) array."""
  compute = net.context if which == "context" else net.head_input
  moves = data.VIEW_SHIFTS[views]
  return continual.map_images(
      lambda x: jnp.stack([compute(params, data.shifted(x, down, right))
                           for down, right in moves], 1), images, max(1, batch // views))


def _head_streams(head: heads.Head, net: Network, params, bg, ev, ecfg) -> Callable:
  """``streams`` as :func:`_adam_streams`'s with a closed-form head over
  fixed features (the grid holds its regularisers; keys are unused: the
  head has no random initialisation). The search scores only the held-out
  drawings."""
  feats = {"search": closed_form_features(net, params, bg, ecfg.features, ecfg.views),
           "final": closed_form_features(net, params, ev, ecfg.features, ecfg.views)}
  evaluators = {side: jax.jit(heads.make_head_evaluator(
      head, train_per_class=ecfg.train_per_class, train_scores=side == "final"))
      for side in feats}

  def streams(keys, regs, classes, side):
    del keys
    return evaluators[side](regs, classes, feats[side])

  return streams


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

  ``ecfg.finetune`` names the parameters re-learnt (empty: the method's
  registry entry). ``ecfg.learner`` other than 'adam' learns the classifier
  with a closed-form head (:mod:`heads`) on the fixed features
  (``ecfg.features``) instead, its regulariser searched as the lr is.
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
  finetune = relearnt(method, net, ecfg)
  if ecfg.learner == "adam":
    streams = _adam_streams(net, params, finetune, bg, ev, ecfg, mesh)
    grid = tuple(ecfg.lrs)
  else:
    head = heads.get(ecfg.learner)
    streams = _head_streams(head, net, params, bg, ev, ecfg)
    grid = tuple(ecfg.regs) or head.regs or (0.0,)
  devices = 1 if mesh is None or ecfg.learner != "adam" else mesh.size

  rng = np.random.default_rng(ecfg.seed)
  lrs = jnp.asarray(grid, jnp.float32)
  out = Results(method=method, finetune=list(finetune), oracle=oracle,
                protocol=ecfg.to_dict(), per_n=[], forgetting=None,
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
    lr, votes = continual.choose_lr(grid, np.asarray(search.test))
    res = streams(keys[ecfg.search_runs:], jnp.asarray([lr], jnp.float32),
                  jnp.asarray(cls), "final")
    row = ResultsRow(classes=n, lr=lr, lr_votes=votes, **_summary(res),
                     search_test_mean_per_lr=np.asarray(search.test).mean(0).tolist(),
                     seconds=time.perf_counter() - tn)
    out["per_n"] = sorted([*out["per_n"], row], key=lambda r: r["classes"])
    if out["forgetting"] is not None:    # a longer stream's replaces it: kept
      out["earlier"] = [*out.get("earlier", []),
                        {"forgetting": out["forgetting"], "seconds": out["seconds"]}]
    out["forgetting"] = {"classes": n,
                  "test_per_class_mean": np.asarray(res.test_per_class[:, 0]).mean(0).tolist(),
                  "train_per_class_mean": np.asarray(res.train_per_class[:, 0]).mean(0).tolist()}
    name = method + (" oracle" if oracle else "")
    log(f"{name:>9s} N={n:4d} lr={lr:<8g} train {100 * row['train_mean']:5.1f} "
        f"± {100 * row['train_std']:4.1f}  test {100 * row['test_mean']:5.1f} "
        f"± {100 * row['test_std']:4.1f}  ({row['seconds']:.1f}s)")
    out["seconds"] = earlier_seconds + time.perf_counter() - t0
    if on_update is not None:
      on_update(out)
  return out
