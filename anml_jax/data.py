"""Image datasets split by class (:class:`ClassSplit`), Omniglot as the first
of them, and on-device sampling of meta-training tasks.

Generic code reads a dataset's sizes from its arrays (:class:`ClassSplit`'s
``drawings`` and ``image_shape``); only the Omniglot loader below and its
synthetic stand-in name Omniglot's. Omniglot comes two ways, one result:

* ``source='zip'``: the original ``images_background.zip`` /
  ``images_evaluation.zip`` read directly (no checksum is assumed, so repacked
  copies work). This is what runs offline.
* ``source='tfds'``: ``tensorflow_datasets``' ``omniglot`` builder (downloads).

Images are preprocessed as the original ANML code does (PIL LANCZOS resize of
the 105x105 drawing to 28x28, values in 0..255, then
``(v - 0.92206 * 256) / (0.08426 * 256 * 256)``) and cached as uint8 so the
PNGs are decoded once.

Classes are ordered by (alphabet, character folder) name; the 20 drawings of a
class by file name. The first 15 drawings of a class are its meta-test
*train* images, the last 5 its held-out *test* images.
"""
import hashlib
import io
import os
import re
import zipfile
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_SIZE = 28
DRAWINGS = 20
SETS = {"background": 964, "evaluation": 659}
MEAN = 0.92206 * 256
STD = 0.08426 * 256 * 256
_CACHE_VERSION = 1
_ENTRY = re.compile(r"(?:^|/)(images_background|images_evaluation)/([^/]+)/([^/]+)/([^/]+\.png)$")


class DataError(RuntimeError):
  """Missing or malformed Omniglot data; the message says how to fix it."""


class ClassSplit(NamedTuple):
  """An image dataset split by class into the classes methods are trained on
  and the unseen classes the meta-test learns (Omniglot's terms, background
  and evaluation, name the two sides).

  Attributes:
    background: (C_b, D, H, W, K) the meta-training classes, D drawings each:
      float32, preprocessed, or uint8 0..255 when loaded ``raw`` (then
      normalised inside jit by :func:`to_float`). Omniglot: (964, 20, 28, 28, 1).
    evaluation: (C_e, D, H, W, K) the meta-test classes. Omniglot: (659, ...).
    background_names, evaluation_names: one name per class (Omniglot:
      'Alphabet/characterNN').
  """
  background: np.ndarray
  evaluation: np.ndarray
  background_names: list
  evaluation_names: list

  @property
  def drawings(self) -> int:
    """Images per class, D."""
    return self.background.shape[1]

  @property
  def image_shape(self) -> tuple:
    """(H, W, K) of one image."""
    return tuple(self.background.shape[2:])


def preprocess(raw_uint8: np.ndarray) -> np.ndarray:
  """uint8 (..., H, W) in 0..255 -> float32 (..., H, W, 1), normalised (Omniglot's
  mean and std)."""
  return ((raw_uint8.astype(np.float32) - MEAN) / STD)[..., None]


# preprocess of every uint8 value: to_float looks pixels up in it, so the
# numbers are :func:`preprocess`'s exactly (XLA's float division on the CPU is
# not correctly rounded: dividing inside jit differs in the last bit).
_LEVELS = preprocess(np.arange(256, dtype=np.uint8))[..., 0]


def to_float(images: jax.Array) -> jax.Array:
  """Inside jit: uint8 images (..., H, W, 1) as kept on the device ->
  float32, normalised: bit for bit :func:`preprocess`'s values (a 256-entry
  table); float images pass unchanged."""
  if images.dtype != jnp.uint8:
    return images
  return jnp.asarray(_LEVELS)[images.astype(jnp.int32)]


def as_float(batch):
  """:func:`to_float` on every uint8 leaf of a sampled batch (labels are
  int32 and pass unchanged)."""
  return jax.tree.map(to_float, batch)


def _resize(png_bytes: bytes) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(png_bytes)) as im:
    im = im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def default_omniglot_dir() -> str:
  """$ANML_OMNIGLOT_DIR, else ../shared/omniglot relative to the repo."""
  env = os.environ.get("ANML_OMNIGLOT_DIR")
  if env:
    return env
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(os.path.dirname(repo), "shared", "omniglot")


def default_cache_dir() -> str:
  return os.environ.get("ANML_CACHE_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "anml_jax"))


def _read_zip_set(path: str, set_name: str) -> tuple[np.ndarray, list]:
  """One zip -> uint8 (classes, 20, 28, 28) and class names."""
  try:
    zf = zipfile.ZipFile(path)
  except (OSError, zipfile.BadZipFile) as e:
    raise DataError(
        f"cannot read {path}: {e}. Replace it with an intact copy of Omniglot's "
        f"{set_name} zip (github.com/brendenlake/omniglot, python/).") from e
  groups: dict = {}
  with zf:
    for name in zf.namelist():
      m = _ENTRY.search(name)
      if m and m.group(1) == set_name:
        groups.setdefault((m.group(2), m.group(3)), []).append(name)
    expected = SETS[set_name.replace("images_", "")]
    if len(groups) != expected:
      raise DataError(
          f"{path} holds {len(groups)} character folders under {set_name}/, "
          f"expected {expected}. The zip is incomplete or not Omniglot's "
          f"{set_name}.zip: replace it with the original.")
    keys = sorted(groups)
    out = np.empty((len(keys), DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for c, key in enumerate(keys):
      files = sorted(groups[key])
      if len(files) != DRAWINGS:
        raise DataError(f"{path}: {'/'.join(key)} has {len(files)} drawings, "
                        f"expected {DRAWINGS}; the zip is damaged.")
      for d, f in enumerate(files):
        try:
          out[c, d] = _resize(zf.read(f))
        except Exception as e:  # PIL raises many types on corrupt data
          raise DataError(f"{path}: cannot decode {f} ({e}); the zip is "
                          "damaged, replace it with the original.") from e
  return out, ["/".join(k) for k in keys]


def _zip_paths(omniglot_dir: str) -> dict:
  paths = {s: os.path.join(omniglot_dir, f"images_{s}.zip") for s in SETS}
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    raise DataError(
        f"Omniglot not found: missing {', '.join(missing)}. Put "
        "images_background.zip and images_evaluation.zip there, pass "
        "--omniglot_dir (or set ANML_OMNIGLOT_DIR) to the folder holding them, "
        "or use --data_source=tfds to download through TFDS.")
  return paths


def _fingerprint(paths: Iterable[str]) -> str:
  h = hashlib.sha256(str(_CACHE_VERSION).encode())
  for p in sorted(paths):
    with open(p, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
  return h.hexdigest()[:16]


def examples_to_arrays(examples: Iterable[dict], num_classes: int) -> np.ndarray:
  """TFDS-style examples -> uint8 (num_classes, 20, 28, 28).

  Args:
    examples: dicts with 'image' (105, 105, C) uint8 and 'label' int; labels
      may be offset (TFDS numbers evaluation classes after background ones).
    num_classes: expected number of distinct labels.
  """
  from PIL import Image
  by_label: dict = {}
  for ex in examples:
    img = np.asarray(ex["image"])
    img = img[..., 0] if img.ndim == 3 else img
    im = Image.fromarray(img.astype(np.uint8), "L")
    im = im.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS)
    by_label.setdefault(int(ex["label"]), []).append(np.asarray(im, np.uint8))
  if len(by_label) != num_classes:
    raise DataError(f"TFDS gave {len(by_label)} classes, expected {num_classes}.")
  out = np.empty((num_classes, DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  for c, label in enumerate(sorted(by_label)):
    if len(by_label[label]) != DRAWINGS:
      raise DataError(f"TFDS class {label} has {len(by_label[label])} images, "
                      f"expected {DRAWINGS}.")
    out[c] = np.stack(by_label[label])
  return out


def _load_tfds(data_dir: str | None) -> tuple:
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DataError("--data_source=tfds needs tensorflow-datasets and "
                    "tensorflow: pip install tensorflow-datasets tensorflow") from e
  arrays = []
  for split, set_name in (("train", "background"), ("test", "evaluation")):
    ds = tfds.as_numpy(tfds.load("omniglot", split=split, data_dir=data_dir))
    arrays.append(examples_to_arrays(ds, SETS[set_name]))
  names = [[f"class{c:04d}" for c in range(n)] for n in SETS.values()]
  return arrays[0], arrays[1], names[0], names[1]


def load_omniglot(omniglot_dir: str | None = None, *, source: str = "zip",
                  cache_dir: str | None = None, raw: bool = False) -> ClassSplit:
  """Loads (and caches) both Omniglot sets.

  Args:
    omniglot_dir: folder with images_background.zip and images_evaluation.zip
      (source='zip'); defaults to :func:`default_omniglot_dir`.
    source: 'zip' (offline, reads the zips) or 'tfds' (downloads via TFDS).
    cache_dir: where decoded arrays are kept; defaults to ~/.cache/anml_jax.
    raw: keep the images uint8, (C, 20, 28, 28, 1) in 0..255, a quarter of
      the float32 copy's memory; the training step normalises the images it
      samples (:func:`to_float`, inside jit).

  Returns:
    :class:`ClassSplit`, (964 | 659, 20, 28, 28, 1).
  """
  cache_dir = cache_dir or default_cache_dir()
  if source == "zip":
    paths = _zip_paths(omniglot_dir or default_omniglot_dir())
    tag = _fingerprint(paths.values())
  elif source == "tfds":
    paths, tag = None, "tfds"
  else:
    raise ValueError(f"data source must be 'zip' or 'tfds', got {source!r}")
  cache = os.path.join(cache_dir, f"omniglot{IMAGE_SIZE}_{tag}.npz")
  if os.path.isfile(cache):
    with np.load(cache) as z:
      bg, ev = z["background"], z["evaluation"]
      bg_names, ev_names = list(z["background_names"]), list(z["evaluation_names"])
  else:
    if source == "zip":
      bg, bg_names = _read_zip_set(paths["background"], "images_background")
      ev, ev_names = _read_zip_set(paths["evaluation"], "images_evaluation")
    else:
      bg, ev, bg_names, ev_names = _load_tfds(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + f".tmp{os.getpid()}.npz"
    np.savez(tmp, background=bg, evaluation=ev,
             background_names=np.array(bg_names), evaluation_names=np.array(ev_names))
    os.replace(tmp, cache)
  prep = (lambda a: a[..., None]) if raw else preprocess
  return ClassSplit(prep(bg), prep(ev), bg_names, ev_names)


def hold_out(split: ClassSplit, alphabets) -> ClassSplit:
  """The validation split of ``split``'s meta-training classes: a ClassSplit
  whose background is the classes outside ``alphabets`` (what a run holding
  them out trains on, in their order) and whose evaluation side is the
  classes of ``alphabets`` (whole alphabets, Omniglot's 'Alphabet/characterNN'
  names), which the validation streams learn. Raises DataError naming an
  alphabet the background set lacks."""
  names = [str(n) for n in split.background_names]
  alphabet = [n.split("/")[0] for n in names]
  missing = sorted(set(alphabets) - set(alphabet))
  if missing:
    raise DataError(f"validation alphabets {', '.join(missing)} are not among the "
                    f"meta-training classes' alphabets ({', '.join(sorted(set(alphabet)))})")
  held = np.array([a in set(alphabets) for a in alphabet])
  return ClassSplit(split.background[~held], split.background[held],
                    [n for n, h in zip(names, held) if not h],
                    [n for n, h in zip(names, held) if h])


def synthetic(key: int = 0, background: int = 30, evaluation: int = 20, *,
              drawings: int = DRAWINGS, image_size: int = IMAGE_SIZE,
              noise: float = 0.3, raw: bool = False) -> ClassSplit:
  """Small learnable stand-in for tests and smoke runs: each class is a fixed
  random stroke pattern plus per-drawing noise, ``drawings`` grey images of
  ``image_size`` square per class (Omniglot's sizes by default, other sizes
  to check that nothing assumes them), preprocessed like the real data
  (``raw``: uint8, as :func:`load_omniglot`'s). Names group the classes five
  to an 'alphabet' (``synthetic0/bg0`` ... ``synthetic0/bg4``, ``synthetic1/bg5``,
  ...), so that :func:`hold_out` can hold whole ones out."""
  rng = np.random.default_rng(key)

  def make(n):
    protos = (rng.random((n, 1, image_size, image_size)) < 0.15).astype(np.float32)
    flips = rng.random((n, drawings, image_size, image_size)) < noise * 0.1
    return np.where(np.logical_xor(protos > 0, flips), 0, 255).astype(np.uint8)

  bg, ev = make(background), make(evaluation)
  prep = (lambda a: a[..., None]) if raw else preprocess
  return ClassSplit(prep(bg), prep(ev),
                    [f"synthetic{c // 5}/bg{c}" for c in range(background)],
                    [f"synthetic_ev{c // 5}/ev{c}" for c in range(evaluation)])


SPLITS = ("drawer", "random")


def order_drawings(images: np.ndarray, split: str, seed=0) -> np.ndarray:
  """The drawings of every class of ``images`` (C, D, ...) in the order a
  meta-test splits them (the first ``train_per_class`` learnt, the rest held
  out): 'drawer', as stored (Omniglot: by file name, i.e. drawers 1..20, so
  drawers 1-15 are learnt and 16-20 held out); 'random', a permutation per
  class drawn from ``seed`` (an int or a tuple of ints, numpy's
  ``default_rng``; the same for the same seed and class count).

  The original meta-test takes the first 15 files ``os.listdir`` returns, so
  its split depends on the disk (docs/fidelity.md); 'random' is the
  disk-free version of that.
  """
  if split not in SPLITS:
    raise ValueError(f"split={split!r} must be one of {SPLITS}")
  if split == "drawer":
    return images
  rng = np.random.default_rng(seed)
  order = np.stack([rng.permutation(images.shape[1]) for _ in range(images.shape[0])])
  return np.take_along_axis(images, order.reshape(order.shape + (1,) * (images.ndim - 2)),
                            axis=1)


def with_rotations(images: np.ndarray, rotations: int) -> np.ndarray:
  """(C, D, H, W, ch) -> (rotations * C, D, H, W, ch): every class of
  ``images`` turned by 0, 90, 180 and 270 degrees (the first ``rotations``
  of those), each turn a class of its own, stacked turn after turn (class
  ``k * C + c`` is class ``c`` turned ``k`` times). The classic enlargement
  of Omniglot's training classes (Santoro et al. 2016, Vinyals et al. 2016);
  1 returns ``images`` itself."""
  if not 1 <= rotations <= 4:
    raise ValueError(f"rotations={rotations} must be 1, 2, 3 or 4 (turns of 90 degrees)")
  if rotations == 1:
    return images
  if images.shape[2] != images.shape[3]:
    raise ValueError(f"rotations={rotations} needs square images, got "
                     f"{images.shape[2]}x{images.shape[3]}")
  return np.concatenate([np.rot90(images, k, axes=(2, 3)) for k in range(rotations)])


# The translated copies of an image a meta-test may learn and score it by
# (``eval_config.views``): (rows down, columns right) of each copy, the image
# itself first; 5 adds the four one-pixel moves, 9 the diagonal ones too.
VIEW_SHIFTS = {1: ((0, 0),),
               5: ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
               9: ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1),
                   (-1, -1), (-1, 1), (1, -1), (1, 1))}


def shifted(images: jax.Array, down: int, right: int) -> jax.Array:
  """(..., H, W, ch) -> the images moved ``down`` rows and ``right`` columns
  (negative: up, left); the uncovered border repeats the edge pixels
  (Omniglot's: background), so no value outside the image is made up."""
  m = max(abs(down), abs(right))
  if m == 0:
    return jnp.asarray(images)
  return _window(images, m, down, right)


def _window(images: jax.Array, m: int, down, right) -> jax.Array:
  """(..., H, W, ch) padded ``m`` pixels each way with its edges, then the
  (H, W) window ``down`` rows and ``right`` columns off centre (each in
  [-m, m], Python ints or traced scalars): the one implementation of a move."""
  images = jnp.asarray(images)
  lead, (h, w, ch) = images.shape[:-3], images.shape[-3:]
  pad = [(0, 0)] * len(lead) + [(m, m), (m, m), (0, 0)]
  padded = jnp.pad(images, pad, mode="edge")
  start = (0,) * len(lead) + (m - down, m - right, 0)
  return jax.lax.dynamic_slice(padded, start, (*lead, h, w, ch))


def random_shifts(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
  """(B, H, W, ch) -> each image moved by its own random (rows down, columns
  right), each uniform in [-max_shift, max_shift], as :func:`shifted` moves
  it (edge pixels repeated); pure, jit-able. 0 returns ``images``. Each image
  is padded once and its window sliced, so no other move is computed."""
  if max_shift == 0:
    return images
  moves = jax.random.randint(key, (images.shape[0], 2), -max_shift, max_shift + 1)
  return jax.vmap(lambda x, mv: _window(x, max_shift, mv[0], mv[1]))(images, moves)


class TaskBatch(NamedTuple):
  """One meta-training task (leading meta-batch axis B when batched).

  x_traj: (B, T, H, W, 1) one class's drawings, in inner-loop order.
  y_traj: (B, T) its label.
  x_rem: (B, R + T, H, W, 1) remember set (R random images of all meta-train
    classes) followed by T drawings of the trajectory class again.
  y_rem: (B, R + T) labels.
  """
  x_traj: jax.Array
  y_traj: jax.Array
  x_rem: jax.Array
  y_rem: jax.Array


def sample_tasks(key: jax.Array, images: jax.Array, *, meta_batch: int,
                 traj_len: int, remember_size: int) -> TaskBatch:
  """Samples a meta-batch of tasks on device (pure, jit-able).

  As in the original: the trajectory is ``traj_len`` drawings of one class in
  random order; the meta-loss batch is ``remember_size`` images drawn without
  replacement from all meta-train images plus ``traj_len`` drawings of the
  trajectory class. The B trajectory classes are distinct.

  Args:
    key: PRNG key.
    images: (C, D, H, W, 1) meta-train images; labels are class indices.
  """
  num_classes, drawings = images.shape[:2]
  k_cls, k_traj, k_rem, k_again = jax.random.split(key, 4)
  classes = jax.random.choice(k_cls, num_classes, (meta_batch,), replace=False)

  def one(c, kt, kr, ka):
    traj = jax.random.permutation(kt, drawings)[:traj_len]
    again = jax.random.permutation(ka, drawings)[:traj_len]
    flat = jax.random.choice(kr, num_classes * drawings, (remember_size,),
                             replace=False)
    rc, rd = flat // drawings, flat % drawings
    x_rem = jnp.concatenate([images[rc, rd], images[c, again]])
    y_rem = jnp.concatenate([rc, jnp.full((traj_len,), c)]).astype(jnp.int32)
    return (images[c, traj], jnp.full((traj_len,), c, jnp.int32), x_rem, y_rem)

  keys = [jax.random.split(k, meta_batch) for k in (k_traj, k_rem, k_again)]
  return TaskBatch(*jax.vmap(one)(classes, *keys))


class Episode(NamedTuple):
  """A many-class episode for a closed-form head (no meta-batch axis).

  x_sup: (W * S, *image_shape) the support stream, class after class (``S``
    drawings of each of ``W`` classes). y_sup: (W * S,) episode labels in
    [0, W). x_qry: (W * Q, *image_shape) other drawings of the same classes.
    y_qry: (W * Q,) their labels.
  """
  x_sup: jax.Array
  y_sup: jax.Array
  x_qry: jax.Array
  y_qry: jax.Array


def sample_episode(key: jax.Array, images: jax.Array, *, ways: int, shots: int,
                   queries: int) -> Episode:
  """Samples an episode on device (pure, jit-able): ``ways`` distinct classes
  of ``images`` (C, D, ...), and for each a random ``shots`` of its D
  drawings to learn from and ``queries`` others to score; labels are the
  classes' positions in the episode. ``shots + queries`` <= D."""
  num_classes, drawings = images.shape[:2]
  k_cls, k_draw = jax.random.split(key)
  classes = jax.random.choice(k_cls, num_classes, (ways,), replace=False)
  order = jax.vmap(lambda k: jax.random.permutation(k, drawings))(
      jax.random.split(k_draw, ways))                                   # (W, D)
  picked = images[classes[:, None], order[:, :shots + queries]]         # (W, S + Q, ...)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  label = lambda n: jnp.repeat(jnp.arange(ways, dtype=jnp.int32), n)
  return Episode(flat(picked[:, :shots]), label(shots), flat(picked[:, shots:]),
                 label(queries))


def sample_iid_batch(key: jax.Array, images: jax.Array, batch: int):
  """(batch, H, W, 1) images and (batch,) labels drawn uniformly (pretraining)."""
  num_classes, drawings = images.shape[:2]
  flat = jax.random.choice(key, num_classes * drawings, (batch,), replace=False)
  return images[flat // drawings, flat % drawings], (flat // drawings).astype(jnp.int32)
