"""The training step built from parts: each part, the registry, and a method
registered from outside the package."""
import json
import os

import jax
import numpy as np
import optax

import train
from anml_jax import configs, data, meta, methods, steps, training
from tests.conftest import smoke_args


def _lr_halving_estimator(cfg, net):
  """An estimator defined outside the package: the plain loss's gradient,
  halved."""
  plain = steps.direct(cfg, net)

  def estimate(params, batch):
    at, grads, loss, aux = plain(params, batch)
    return at, jax.tree.map(lambda g: g / 2, grads), loss, aux

  return estimate


def test_a_method_registered_from_outside_trains(tmp_path):
  entry = methods.register(methods.Method(
      name="outside_halved", arch="anml", finetune=("pln/head",),
      sampler=steps.iid_batches, estimator=_lr_halving_estimator,
      batch_key="pretrain_batch", zaps=("none", "epoch"),
      optimizer=lambda cfg: optax.sgd(cfg.meta_lr),
      config={"zap": "epoch", "meta_lr": 3e-4},
      description="a test method: i.i.d. batches, halved gradients, epoch zaps, SGD"))
  try:
    cfg = configs.get_config("smoke", "outside_halved")
    cfg.update(num_train_classes=8, steps=24, log_every=8, ckpt_every=8)   # zaps at 20
    cfg.model.update(num_outputs=8)
    assert cfg.zap == "epoch" and cfg.meta_lr == 3e-4
    images = data.synthetic(0, background=8, evaluation=1).background
    state = training.train(cfg, str(tmp_path / "w"), images, progress=False)
    assert meta.steps_taken(state) == 24 and entry.trained
    lines = [json.loads(l) for l in open(tmp_path / "w" / "metrics.jsonl")]
    assert [l["step"] for l in lines] == [8, 16, 24]
    assert all(np.isfinite(l["loss"]) for l in lines)
    saved = json.load(open(tmp_path / "w" / "config.json"))
    assert saved["method"] == "outside_halved" and configs.from_dict(saved).zap == "epoch"
  finally:
    del methods.REGISTRY["outside_halved"]


def test_asb_trains_and_resumes_from_the_cli(tmp_path):
  w = str(tmp_path / "asb")
  assert train.main(["--workdir", w, *smoke_args("asb", steps=2)]) == 0
  assert train.main(["--workdir", w, "--resume", "--data_source=synthetic", "--noprogress",
                     "--config.steps=4"]) == 0
  saved = json.load(open(os.path.join(w, "config.json")))
  assert saved["zap"] == "trajectory" and saved["model"]["gate"] is False
  assert saved["steps"] == 4
