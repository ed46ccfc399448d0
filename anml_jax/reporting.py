"""Results files of a meta-test: JSON, CSV, a printed table and plots."""
import csv
import io
import json
import os
from typing import Sequence, TypedDict

from anml_jax.results.record import hyper


class ResultsRow(TypedDict):
  """One number of classes N of a meta-test (accuracies as fractions).

  train_runs / test_runs: accuracy of each final run; *_mean, *_std over
  them. hyper: the value of the learner's grid the search chose (the
  record's ``hyper_name``: the learning rate of 'adam', a closed-form head's
  regulariser, 0 for a head without one), hyper_votes: search runs that
  voted for each value, search_test_mean_per_hyper: the search's mean test
  accuracy per value. Records of schema version 1 name these three ``lr``,
  ``lr_votes`` and ``search_test_mean_per_lr`` (:func:`record.hyper` reads
  both).
  """
  classes: int
  hyper: float
  hyper_votes: list
  train_mean: float
  train_std: float
  test_mean: float
  test_std: float
  train_runs: list
  test_runs: list
  search_test_mean_per_hyper: list
  seconds: float


class Results(TypedDict, total=False):
  """The record of a meta-test: results.json, one per evaluation.

  method, finetune (parameter prefixes re-learnt), oracle (i.i.d. order),
  schema (:data:`anml_jax.results.record.SCHEMA_VERSION`; absent: 1),
  protocol (the eval config), hyper_name (what the rows' ``hyper`` is:
  :attr:`learners.Learner.hyper`; absent in version 1), per_n
  (:class:`ResultsRow` per N), forgetting (per-class accuracy after the longest stream: classes,
  test_per_class_mean, train_per_class_mean, in learning order), backend,
  device, devices, seconds; and what was evaluated: checkpoint,
  checkpoint_sha256 (:func:`checkpointing.fingerprint`), checkpoint_step,
  model_config, provenance (of the command that started it) and resumed
  (the provenance of each command that continued it, if any); earlier: the
  forgetting (and seconds) the record held before each longer stream
  replaced it, oldest first, so that no number it held is lost.
  """
  schema: int
  method: str
  finetune: list
  oracle: bool
  protocol: dict
  hyper_name: str
  per_n: list
  forgetting: dict | None
  backend: str
  device: str
  devices: int
  seconds: float
  checkpoint: str | None
  checkpoint_sha256: str | None
  checkpoint_step: int
  model_config: dict
  provenance: dict
  resumed: list
  earlier: list


def atomic_write(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file in the same folder
  and a rename, so a reader (or a process killed mid-write) sees the old file
  or the new one, never a part."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_results(out_dir: str, results: Results) -> None:
  """results.json and results.csv (one row per number of classes), each
  written atomically (:func:`atomic_write`)."""
  os.makedirs(out_dir, exist_ok=True)
  atomic_write(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2))
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["method", "classes", "train_mean", "train_std", "test_mean",
              "test_std", "hyper", "runs"])
  for row in results["per_n"]:
    w.writerow([results["method"], row["classes"], row["train_mean"],
                row["train_std"], row["test_mean"], row["test_std"], hyper(row),
                len(row["test_runs"])])
  atomic_write(os.path.join(out_dir, "results.csv"), buf.getvalue())


def read_results(out_dir: str) -> Results | None:
  """The record in ``out_dir``/results.json, or None if there is none.

  Raises ValueError (one line, naming the file) if it cannot be parsed."""
  path = os.path.join(out_dir, "results.json")
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} cannot be read ({e}); it is not a results record "
                     "written by evaluate.py: restore it from git, or give another "
                     "--out") from None


# Published meta-test test accuracies {N: fraction}, drawn beside ours.
# Paper: Beaulieu et al. 2020, arXiv 2002.09571 v2 (after 600 classes).
# higherANML: the authors' re-implementation (github.com/uvm-neurobotics-lab/
# higherANML, README table; 30,000 meta-steps, classifier re-learnt).
PUBLISHED = {
    "ANML (paper)": {600: 0.638},
    "ANML oracle (paper)": {600: 0.710},
    "OML (paper)": {600: 0.182},
    "OML, last layer re-learnt (paper)": {600: 0.442},
    "higherANML (reported)": {10: 0.90, 50: 0.89, 75: 0.86, 100: 0.85, 200: 0.80,
                              300: 0.76, 400: 0.72, 600: 0.65},
}


def write_report(out_dir: str, results_list: Sequence[Results]) -> str:
  """accuracy_vs_classes.png, forgetting.png and table.md (returned) for one
  or several results records, compared with each other and with the
  published figures at the same N. Records of one evaluation split over
  several schedules are shown as one (:func:`join_parts`)."""
  os.makedirs(out_dir, exist_ok=True)
  results_list = join_parts(results_list)
  plot_curves(results_list, os.path.join(out_dir, "accuracy_vs_classes.png"))
  plot_forgetting(results_list, os.path.join(out_dir, "forgetting.png"))
  text = table(results_list)
  published = comparison_table(results_list)
  if published:
    text += "\n\nMeta-test test accuracy %, ours beside the published figures:\n\n" + published
  text += ("\n\nPer-class accuracy after the longest stream (forgetting):\n\n"
           + forgetting_table(results_list) + "\n")
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(text)
  return text


def merge_results(parts: Sequence[Results]) -> Results:
  """Joins evaluations of one checkpoint and protocol done for different
  numbers of classes (e.g. an interrupted run resumed with another ``schedule``).

  Raises ValueError if the parts differ in method, checkpoint (two paths to
  one file, e.g. through a symlink, are the same checkpoint), fine-tuned
  parameters or protocol (other than the schedule), or repeat an N.
  """
  keys = ("method", "finetune", "oracle", "checkpoint", "checkpoint_step")
  first = parts[0]
  proto = {k: v for k, v in first["protocol"].items() if k != "schedule"}
  for p in parts[1:]:
    for k in keys:
      a, b = first.get(k), p.get(k)
      if a != b and not (k == "checkpoint" and _same_file(a, b)):
        raise ValueError(f"cannot merge: {k} differs ({a!r} vs {b!r})")
    other = {k: v for k, v in p["protocol"].items() if k != "schedule"}
    if other != proto:
      raise ValueError("cannot merge: the protocols differ (other than the schedule)")
  rows = [row for p in parts for row in p["per_n"]]
  ns = [row["classes"] for row in rows]
  if len(set(ns)) != len(ns):
    raise ValueError(f"cannot merge: some N appear twice ({sorted(ns)})")
  rows.sort(key=lambda row: row["classes"])
  longest = max(parts, key=lambda p: p["forgetting"]["classes"])
  merged = {**first, "per_n": rows, "forgetting": longest["forgetting"],
            "seconds": sum(p.get("seconds", 0.0) for p in parts)}
  merged["protocol"] = {**first["protocol"], "schedule": sorted(ns)}
  return merged


def _same_file(a, b) -> bool:
  try:
    return os.path.samefile(a, b)
  except (OSError, TypeError):
    return False


def join_parts(results_list: Sequence[Results]) -> list[Results]:
  """Records with the same :func:`label` that :func:`merge_results` accepts
  (one checkpoint and protocol, different N) joined into one, in the order
  of first appearance. Each record joins the first earlier one it merges
  with, so records that share a label but not a checkpoint or protocol stay
  apart without keeping the others of that label apart."""
  joined: list[tuple[list[Results], Results]] = []   # (parts, their merge)
  for r in results_list:
    for i, (parts, _) in enumerate(joined):
      if label(parts[0]) == label(r):
        try:
          joined[i] = (parts + [r], merge_results([*parts, r]))
        except ValueError:
          continue
        break
    else:
      joined.append(([r], r))
  return [merged for _, merged in joined]


def label(results: dict) -> str:
  """Names an evaluation by what tells evaluations apart: the method, 'oracle'
  for i.i.d. learning, 'first order' for a meta-gradient without second-order
  terms, its training steps (none for scratch, step 0), the groups
  fine-tuned, and the lr search when it used fewer runs than the final
  evaluation (a reduced protocol). A record that carries its own ``label``
  (a row of the results store, :func:`store.view`) is named by it."""
  if "label" in results:
    return results["label"]
  step = results.get("checkpoint_step")
  steps = f" {step} steps" if step else ""
  oracle = " oracle" if results.get("oracle") else ""
  order = " first order" if (results.get("model_config") or {}).get("first_order") else ""
  name = f"{results['method']}{oracle}{order}{steps} [{'+'.join(results['finetune'])}]"
  protocol = results.get("protocol", {})
  if protocol.get("learner", "adam") != "adam":
    name += f" {protocol['learner']} head"
    if protocol.get("features") == "context":
      name += " on the context"
    if protocol.get("views", 1) > 1:
      name += f", {protocol['views']} views"
  search, runs = protocol.get("search_runs"), protocol.get("runs")
  if search is not None and runs is not None and search < runs:
    name += f" (lr searched on {search} run{'s' if search > 1 else ''})"
  return name


def table(results_list: Sequence[dict]) -> str:
  """Markdown table: one row per (evaluation, N) with mean ± std in percent."""
  lines = ["| method | classes | meta-test train acc. % | meta-test test acc. % | chosen lr "
           "or regulariser |",
           "|---|---|---|---|---|"]
  for r in results_list:
    for row in r["per_n"]:
      lines.append(
          f"| {label(r)} | {row['classes']} | "
          f"{100 * row['train_mean']:.1f} ± {100 * row['train_std']:.1f} | "
          f"{100 * row['test_mean']:.1f} ± {100 * row['test_std']:.1f} | "
          f"{hyper(row):g} |")
  return "\n".join(lines)


def comparison_table(results_list: Sequence[Results],
                     published: dict = PUBLISHED) -> str:
  """Markdown: one row per N of ``results_list`` that a published figure
  also has; a column per evaluation (test mean %) and per published source.
  Empty if no N is shared."""
  ns = sorted({row["classes"] for r in results_list for row in r["per_n"]})
  ns = [n for n in ns if any(n in pts for pts in published.values())]
  if not ns:
    return ""
  refs = [k for k, pts in published.items() if any(n in pts for n in ns)]
  lines = ["| classes | " + " | ".join([label(r) for r in results_list] + refs) + " |",
           "|---" * (1 + len(results_list) + len(refs)) + "|"]
  for n in ns:
    ours = [next((f"{100 * row['test_mean']:.1f}" for row in r["per_n"]
                  if row["classes"] == n), "") for r in results_list]
    theirs = [f"{100 * published[k][n]:.1f}" if n in published[k] else "" for k in refs]
    lines.append(f"| {n} | " + " | ".join(ours + theirs) + " |")
  return "\n".join(lines)


def plot_curves(results_list: Sequence[dict], path: str,
                published: dict = PUBLISHED) -> None:
  """Accuracy vs number of classes (paper Fig. 2/3 style), train and test
  panels, one line per method, error bars = std over runs; the published
  test accuracies within the plotted range of N as reference markers."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  colours = _label_colours(results_list)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for ax, split in zip(axes, ("train", "test")):
    shown = set()
    for r in results_list:
      name = label(r)
      ns = [row["classes"] for row in r["per_n"]]
      ax.errorbar(ns, [row[f"{split}_mean"] for row in r["per_n"]],
                  yerr=[row[f"{split}_std"] for row in r["per_n"]],
                  marker="o", capsize=3, color=colours[name],
                  label="_nolegend_" if name in shown else name)
      shown.add(name)
    top = max(row["classes"] for r in results_list for row in r["per_n"])
    for (name, pts), marker in zip(published.items() if split == "test" else (),
                                   "*XPDv^"):
      shown = sorted(n for n in pts if n <= top)
      if shown:
        ax.plot(shown, [pts[n] for n in shown], marker, color="0.3", ms=8,
                ls=":" if len(shown) > 1 else "", label=name)
    ax.set_title(f"meta-test {split} accuracy")
    ax.set_xlabel("number of classes learned sequentially")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("accuracy")
  _save_with_legend_beside(fig, axes[1], path)


def _label_colours(results_list: Sequence[dict]) -> dict:
  """One colour per label (records of one label that could not be joined,
  e.g. two checkpoint files of one run, share it): tab20's dark shades
  first, then its light ones, so that up to 20 methods stay apart."""
  import matplotlib.pyplot as plt
  names = list(dict.fromkeys(label(r) for r in results_list))
  cmap = plt.get_cmap("tab20")
  return {n: cmap((2 * i) % 20 + (i // 10) % 2) for i, n in enumerate(names)}


def _save_with_legend_beside(fig, ax, path: str) -> None:
  """Lays the axes out first, then puts ``ax``'s legend to their right (not
  over the data, and without shrinking the axes to make room for it) and
  saves the figure grown to hold it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def binned_mean(curve: Sequence[float], width: int) -> tuple[list[float], list[float]]:
  """Means of consecutive groups of ``width`` values of ``curve`` (the last
  group may be shorter), each placed at the mean 1-based position of its
  group. Returns (positions, means)."""
  groups = [list(curve[i:i + width]) for i in range(0, len(curve), width)]
  positions = [i * width + (len(g) + 1) / 2 for i, g in enumerate(groups)]
  return positions, [sum(g) / len(g) for g in groups]


def forgetting_table(results_list: Sequence[dict], parts: int = 10) -> str:
  """Markdown table of per-class accuracy after the longest stream, averaged
  over ``parts`` consecutive stretches of the stream (first = learned first),
  test and train, in percent."""
  lines = ["| method | classes | split | mean accuracy % by stretch of the stream, "
           "first learned first |",
           "|---|---|---|---|"]
  for r in results_list:
    f = r["forgetting"]
    if not f:
      continue
    for split in ("test", "train"):
      curve = f[f"{split}_per_class_mean"]
      _, means = binned_mean(curve, -(-len(curve) // parts))
      lines.append(f"| {label(r)} | {len(curve)} | {split} | "
                   + ", ".join(f"{100 * m:.0f}" for m in means) + " |")
  return "\n".join(lines)


def plot_forgetting(results_list: Sequence[dict], path: str) -> None:
  """Per-class test accuracy after the longest stream vs the position at
  which the class was learned (early classes low = forgetting)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  colours = _label_colours(results_list)
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in (r for r in results_list if r["forgetting"]):
    curve = r["forgetting"]["test_per_class_mean"]
    width = max(1, len(curve) // 20)
    colour = colours[label(r)]
    ax.plot(range(1, len(curve) + 1), curve, lw=0.6, alpha=0.3, color=colour)
    ax.plot(*binned_mean(curve, width), color=colour, lw=2, marker="o", ms=3,
            label=f"{label(r)}: after {len(curve)} classes, mean of {width}")
  ax.set_title("per-class test accuracy after the longest stream (faint: each class)")
  ax.set_xlabel("position of the class in the stream (1 = learned first)")
  ax.set_ylabel("accuracy")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  _save_with_legend_beside(fig, ax, path)


def read_metrics(metrics_path: str) -> list[dict]:
  """The rows of a run's metrics.jsonl, one dict per logged step."""
  with open(metrics_path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_training(runs: str | dict, path: str) -> None:
  """Meta-training curves from runs' metrics.jsonl: loss and remember-set
  accuracy (after the inner loop) against the step. ``runs``: one
  metrics.jsonl path, or {label: path} to draw several runs together."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  runs = {"": runs} if isinstance(runs, str) else runs
  fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
  for name, metrics_path in runs.items():
    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    a.plot(steps, [r["loss"] for r in rows], lw=1, label=name or None)
    b.plot(steps, [r["accuracy"] for r in rows], lw=1, label=name or None)
  a.set_yscale("log")
  a.set_title("meta-loss")
  b.set_ylim(0, 1)
  b.set_title("training accuracy (remember set after the inner loop)")
  for ax in (a, b):
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if len(runs) > 1:
    b.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _square(v):
  """(D,) -> (s, s), s = ceil(sqrt(D)), zero-padded: a vector shown as a map."""
  import numpy as np
  v = np.asarray(v, np.float32).ravel()
  s = int(np.ceil(np.sqrt(v.size)))
  return np.pad(v, (0, s * s - v.size)).reshape(s, s)


def plot_sparsity(images, rows: dict, means: dict, path: str, rel: float = 0.1) -> None:
  """Paper Fig. 5 style: for each example image (left) its representations
  side by side, one map per name in ``rows`` ({name: (E, D)}), titled with
  the share of units above ``rel`` times the map's largest value, and a last
  row with the mean of each over the whole set (``means``: {name: (D,)})."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(rows)
  e = len(images)
  fig, axes = plt.subplots(e + 1, len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.2 * (e + 1)))
  for i in range(e + 1):
    ax = axes[i, 0]
    if i < e:
      ax.imshow(images[i].squeeze(), cmap="gray")
      ax.set_title(f"image {i + 1}", fontsize=8)
    else:
      ax.text(0.5, 0.5, "mean over\nthe set", ha="center", va="center")
    for j, name in enumerate(names):
      v = rows[name][i] if i < e else means[name]
      axes[i, j + 1].imshow(_square(v), cmap="viridis", interpolation="nearest")
      share = float((v > rel * v.max()).mean()) if i < e else None
      axes[i, j + 1].set_title(
          name + ("" if share is None else f"\n{100 * share:.0f}% above {rel:g} x max"),
          fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_tsne(panels: dict, labels, path: str, knn: dict | None = None) -> None:
  """Paper Fig. 6 style: one 2-D embedding per representation ({name: (S,
  2)}), points coloured by class; the titles carry KNN accuracy if given."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
  for ax, (name, xy) in zip(axes[0], panels.items()):
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=12)
    extra = "" if not knn or knn.get(name) is None else f"\nKNN {100 * knn[name]:.1f}%"
    ax.set_title(name + extra, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"t-SNE of {len(set(labels))} meta-test classes, first time seen "
               "(KNN accuracy over all analysed classes)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
