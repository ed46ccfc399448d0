"""The paper's representation analyses (Beaulieu et al. 2020, Figs. 5 and 6).

* Sparsity (Fig. 5): the fraction of a representation's units that are active
  (> 0) per image, and the units never active over a whole image set (dead),
  before and after ANML's gate.
* Separation (Fig. 6): K-nearest-neighbour accuracy of a representation on
  unseen classes, and a 2-D t-SNE embedding of a few of them.

The representations come from :attr:`models.Network.probes` (ANML:
``pln_before_gate``, ``gate``, ``pln_after_gate``, ``nm``; OML:
``representation``), computed batched over an image set. Sparsity is pure
``jnp``; KNN and t-SNE use scikit-learn.
"""
import jax
import jax.numpy as jnp
import numpy as np

from anml_jax import continual
from anml_jax.models import Network
from anml_jax.types import Params


def probe_set(net: Network, params: Params, images: jax.Array,
              batch: int = 256) -> dict:
  """Every probe of ``net`` on every image: (C, D, H, W, 1) ->
  {name: (C, D, F_name)}."""
  if net.probes is None:
    raise ValueError(f"network {net.name!r} exposes no probes to analyse")
  return continual.map_images(lambda x: net.probes(params, x), images, batch)


def active(acts: jax.Array, rel: float = 0.0) -> jax.Array:
  """(S, D) activations -> (S, D) bool: the unit is above ``rel`` times the
  image's largest activation (``rel=0``: above 0). The gate never outputs an
  exact 0, so after gating "> 0" only changes where it underflows; ``rel``
  measures what it attenuates."""
  return acts > rel * jnp.max(acts, axis=-1, keepdims=True)


def active_fraction(acts: jax.Array, rel: float = 0.0) -> jax.Array:
  """(S, D) activations -> (S,) fraction of :func:`active` units per image."""
  return jnp.mean(active(acts, rel), axis=-1)


def dead_units(acts: jax.Array, rel: float = 0.0) -> jax.Array:
  """(S, D) activations -> number of units :func:`active` in none of the S
  images."""
  return jnp.sum(~jnp.any(active(acts, rel), axis=0))


def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, k: int = 5) -> float:
  """Accuracy of a K-nearest-neighbour classifier (Euclidean, uniform vote)
  fitted on (x_train (S, D), y_train (S,)), on (x_test, y_test)."""
  from sklearn.neighbors import KNeighborsClassifier
  knn = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
  knn.fit(np.asarray(x_train), np.asarray(y_train))
  return float(knn.score(np.asarray(x_test), np.asarray(y_test)))


def knn_on_drawings(reps: np.ndarray, k: int, train_per_class: int) -> float:
  """KNN accuracy with the meta-test split: reps (C, D, F) of C classes; the
  first ``train_per_class`` drawings of each class are the neighbours, the
  rest are classified."""
  c = reps.shape[0]
  x_tr, y_tr, x_te, y_te = continual.split_drawings(
      jnp.asarray(reps), jnp.arange(c), train_per_class)
  return knn_accuracy(x_tr, y_tr, x_te, y_te, k)


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
  """(S, D) -> (S, 2) t-SNE embedding (PCA initialisation, perplexity
  min(30, (S - 1) / 3))."""
  from sklearn.manifold import TSNE
  x = np.asarray(x, np.float64)
  perplexity = min(30.0, (x.shape[0] - 1) / 3)
  return TSNE(2, perplexity=perplexity, init="pca",
              random_state=seed).fit_transform(x)
