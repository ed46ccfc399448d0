"""The results store: every evaluation record under one folder, indexed, and
the tables generated from it.

A record is one ``results.json`` written by ``evaluate.py``; it is never
edited (``evaluate.py`` refuses to replace one). The store reads every record
below a root as it is, older ones included (a field they lack is derived or
left unknown, never invented), and answers "which measurement fills this cell"
for a row :class:`Spec` and a number of classes N:

* every record's schema version must be one this code reads
  (:func:`record.version`: a newer one is a one-line error);
* a record matches a spec when each of the spec's fields equals the record's
  (:func:`record.describe`);
* among the matching records that hold N, each meta-training seed keeps one:
  the one with the fullest protocol (most final runs, then most lr-search
  runs, then the most lrs), then the first by path;
* the cell is the mean test accuracy of that record's runs (with their
  standard deviation) for one seed, or the mean over seeds of the per-seed
  means (with the standard deviation over seeds) for several.

Tables and the README's table are made by ``report.py`` from here; nothing is
copied by hand.
"""
import json
import os
import re
from typing import NamedTuple, Sequence

import numpy as np

from anml_jax.results.record import describe, version

PAPER_LRS = 14        # the original's lr grid size (configs.PAPER_LRS; a test checks)
FULL_RUNS = 10        # the original's final runs per N (evaluate_classification.py --runs)


class Entry(NamedTuple):
  """One record: ``path`` its folder relative to the store's root."""
  path: str
  record: dict


def load(root: str) -> list[Entry]:
  """Every ``results.json`` below ``root``, sorted by folder. Raises
  ValueError naming a record of a schema version this code cannot read."""
  out = []
  for folder, _, files in os.walk(root):
    if "results.json" in files:
      path = os.path.join(folder, "results.json")
      with open(path) as f:
        rec = json.load(f)
      version(rec, path)
      out.append(Entry(os.path.relpath(folder, root), rec))
  return sorted(out, key=lambda e: e.path)


class Spec(NamedTuple):
  """A table row: its ``name`` and the :func:`describe` fields a record must
  have to fill it, as ``(key, value)`` pairs; a frozenset value admits any
  of its members (several runs of one recipe named by their checkpoints)."""
  name: str
  match: tuple


# Fields a spec that does not name them matches at this value only, so that
# a variant of the protocol or of training never fills the plain row.
PLAIN = {"views": 1, "shift": 0, "stream_classes": "evaluation"}


def matches(record: dict, spec: Spec) -> bool:
  d = describe(record)
  return all(d[k] in v if isinstance(v, frozenset) else d[k] == v
             for k, v in {**PLAIN, **dict(spec.match)}.items())


class Cell(NamedTuple):
  """One N of one row. mean, std: test accuracy in percent (over the runs of
  one seed, or over the seeds' means); seeds: how many; entries: the records
  used, one per seed; search_runs, runs, lrs: the least of the seeds'
  protocols (fewest lr-search runs, fewest final runs, smallest grid), so a
  cell's marks never hide a seed measured on less."""
  mean: float
  std: float
  seeds: int
  entries: tuple
  search_runs: int
  runs: int
  lrs: tuple


def _fullness(entry: Entry) -> tuple:
  p = entry.record["protocol"]
  grid = p["lrs"] if p.get("learner", "adam") == "adam" else p.get("regs", ())
  return (p.get("runs", 0), p.get("search_runs", 0), len(grid))


def cell(entries: Sequence[Entry], spec: Spec, n: int) -> Cell | None:
  """The measurement of ``spec`` at ``n`` classes (rules in the module
  docstring), or None if no record holds it."""
  by_seed: dict = {}
  for e in entries:
    if matches(e.record, spec) and any(r["classes"] == n for r in e.record["per_n"]):
      by_seed.setdefault(describe(e.record)["seed"], []).append(e)
  if not by_seed:
    return None
  chosen = []
  for seed in sorted(by_seed, key=lambda s: (s is None, s)):
    cands = by_seed[seed]
    best = max(_fullness(c) for c in cands)
    chosen.append(next(c for c in cands if _fullness(c) == best))
  rows = [next(r for r in e.record["per_n"] if r["classes"] == n) for e in chosen]
  if len(rows) == 1:
    mean, std = rows[0]["test_mean"], rows[0]["test_std"]
  else:
    means = np.array([r["test_mean"] for r in rows])
    mean, std = float(means.mean()), float(means.std(ddof=1))
  ps = [e.record["protocol"] for e in chosen]
  return Cell(100 * mean, 100 * std, len(rows), tuple(chosen),
              min(p["search_runs"] for p in ps), min(p["runs"] for p in ps),
              tuple(min((p["lrs"] for p in ps), key=len)))


def seed_means(entries: Sequence[Entry], spec: Spec, n: int) -> list[float]:
  """The per-seed mean test accuracies (percent) behind ``cell``."""
  c = cell(entries, spec, n)
  if c is None:
    return []
  return [100 * next(r for r in e.record["per_n"] if r["classes"] == n)["test_mean"]
          for e in c.entries]


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
  """Welch's t-test of two rows' seed means at one N: {'diff' (mean a - mean
  b), 'p' (two-sided), 'seeds' (len a, len b)}; p is None when either side
  has fewer than 2 seeds (a difference of single runs is not tested)."""
  diff = float(np.mean(a) - np.mean(b))
  if len(a) < 2 or len(b) < 2:
    return {"diff": diff, "p": None, "seeds": (len(a), len(b))}
  from scipy import stats
  p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
  return {"diff": diff, "p": p, "seeds": (len(a), len(b))}


def same_classes(a: dict, b: dict, n: int) -> bool:
  """Whether two records' final runs at N = ``n`` drew the same classes: the
  class draws follow one generator through the schedule, so the seed, the
  pools, the run counts and the schedule up to ``n`` must all agree."""
  pa, pb = a.get("protocol") or {}, b.get("protocol") or {}
  upto = lambda p: [m for m in p.get("schedule", []) if m <= n]
  keys = ("seed", "class_pool", "search_pool", "runs", "search_runs")
  return all(pa.get(k) == pb.get(k) for k in keys) and upto(pa) == upto(pb)


def runs_test(a: dict, b: dict, n: int) -> dict:
  """Two records' final runs at N = ``n`` compared: a paired t-test when
  they drew the same classes (:func:`same_classes`), else Welch's. Returns
  {'test', 'diff' (mean of a minus b, in points), 'se', 't', 'p' (two-sided),
  'runs'}. It counts the runs' spread only, not that of the training seed or
  of a split seed."""
  rows = [next((r for r in rec["per_n"] if r["classes"] == n), None) for rec in (a, b)]
  if None in rows:
    raise ValueError(f"both records need N = {n}")
  x, y = (100 * np.asarray(r["test_runs"], np.float64) for r in rows)
  if min(len(x), len(y)) < 2:
    raise ValueError(f"a test needs >= 2 runs a side: {len(x)}, {len(y)}")
  from scipy import stats
  if same_classes(a, b, n) and len(x) == len(y):
    res, test = stats.ttest_rel(x, y), "paired"
    se = float((x - y).std(ddof=1) / np.sqrt(len(x)))
  else:
    res, test = stats.ttest_ind(x, y, equal_var=False), "welch"
    se = float(np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)))
  return {"test": test, "diff": float(x.mean() - y.mean()), "se": se,
          "t": float(res.statistic), "p": float(res.pvalue), "runs": (len(x), len(y))}


class Marks:
  """Footnote marks for reduced protocols, assigned in order of first use:
  '*' for an lr search on fewer runs than the final evaluation, then one
  mark per distinct lr grid smaller than the paper's; fewer final runs than
  the paper's 10 are written out ("(2 runs)")."""

  SYMBOLS = ("†", "‡", "§", "¶")

  def __init__(self):
    self.grids: dict = {}
    self.star = False

  def of(self, c: Cell, learner: str = "adam") -> str:
    out = ""
    if c.search_runs < c.runs:
      self.star = True
      out += " *"
    if learner == "adam" and len(c.lrs) < PAPER_LRS:
      if c.lrs not in self.grids:
        self.grids[c.lrs] = self.SYMBOLS[len(self.grids)]
      out += " " + self.grids[c.lrs]
    if c.runs < FULL_RUNS:
      out += f" ({c.runs} runs)"
    if c.seeds > 1:
      out += f" ({c.seeds} seeds)"
    return out

  def notes(self) -> str:
    lines = []
    if self.star:
      lines.append("\\* lr searched on 1 run instead of 10 (2-core CPU).")
    for grid, mark in self.grids.items():
      lines.append(f"{mark} lr searched over {len(grid)} of the paper's {PAPER_LRS} "
                   f"lrs ({', '.join(f'{g:g}' for g in grid)}).")
    return " ".join(lines)


def table(entries: Sequence[Entry], specs: Sequence[Spec], ns: Sequence[int], *,
          std: str = "all", published: Sequence[tuple] = (),
          header: str = "N classes") -> str:
  """Markdown: a row per spec, a column per N, each cell ``mean ± std``
  with its protocol marks; ``std`` "seeds": the ± only where a cell rests on
  several training seeds (then it is their spread), the mean alone elsewhere;
  then the ``published`` rows ``(name, {N: text})``; then the marks'
  footnote."""
  if std not in ("all", "seeds"):
    raise ValueError(f"std={std!r}: use 'all' or 'seeds'")
  marks = Marks()
  lines = [f"| {header} | " + " | ".join(str(n) for n in ns) + " |",
           "|---|" + "---|" * len(ns)]
  for spec in specs:
    learner = dict(spec.match).get("learner", "adam")
    cells = []
    for n in ns:
      c = cell(entries, spec, n)
      if c is None:
        cells.append("")
      else:
        text = (f"{c.mean:.1f} ± {c.std:.1f}" if std == "all" or c.seeds > 1
                else f"{c.mean:.1f}")
        cells.append(text + marks.of(c, learner))
    lines.append(f"| {spec.name} | " + " | ".join(cells) + " |")
  for name, values in published:
    lines.append(f"| {name} | " + " | ".join(values.get(n, "") for n in ns) + " |")
  notes = marks.notes()
  return "\n".join(lines) + ("\n\n" + notes if notes else "")


def view(entries: Sequence[Entry], spec: Spec, ns: Sequence[int]) -> dict | None:
  """A results record for ``spec`` as :mod:`reporting`'s plots take it: the
  chosen row of each N (the first seed's where there are several), the
  forgetting curve of its longest, and ``label``: ``spec.name`` without
  markdown; None if no
  N has a measurement."""
  rows, longest = [], None
  for n in ns:
    c = cell(entries, spec, n)
    if c is not None:
      rec = c.entries[0].record
      rows.append(next(r for r in rec["per_n"] if r["classes"] == n))
      if (rec.get("forgetting") or {}).get("classes") == n:
        longest = rec["forgetting"]
  if not rows:
    return None
  return {"label": spec.name.replace("**", ""), "per_n": rows, "forgetting": longest}


def replace_block(text: str, name: str, body: str) -> str:
  """``text`` with what stands between ``<!-- NAME:start -->`` and
  ``<!-- NAME:end -->`` replaced by ``body``. Raises ValueError if the
  markers are missing."""
  start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
  i, j = text.find(start), text.find(end)
  if i < 0 or j < i:
    raise ValueError(f"no {start} ... {end} block to generate into")
  return text[:i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def block(text: str, name: str) -> str:
  """What stands between the markers of ``name`` in ``text``."""
  start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
  i, j = text.find(start), text.find(end)
  if i < 0 or j < i:
    raise ValueError(f"no {start} ... {end} block")
  return text[i + len(start):j].strip("\n")



_FIGURE = re.compile(r"<!-- fig ([\w.-]+) -->(.*?)<!-- /fig -->")


def figure_names(text: str) -> list[str]:
  """The names of the inline figures ``<!-- fig NAME -->...<!-- /fig -->``
  that ``text`` holds, in order."""
  return [m.group(1) for m in _FIGURE.finditer(text)]


def fill_figures(text: str, values: dict) -> str:
  """``text`` with each inline figure's value replaced by ``values[NAME]``.
  Raises ValueError naming a figure that ``values`` does not define."""
  unknown = sorted(set(figure_names(text)) - set(values))
  if unknown:
    raise ValueError(f"inline figure(s) {', '.join(unknown)} are not defined; add them to "
                     "report.FIGURES or remove their <!-- fig NAME --> markers")
  return _FIGURE.sub(lambda m: f"<!-- fig {m.group(1)} -->{values[m.group(1)]}<!-- /fig -->",
                     text)


def outside_generated(text: str) -> str:
  """``text`` without its generated tables (``<!-- NAME:start -->`` ...
  ``<!-- NAME:end -->``) and inline figures: what is written by hand."""
  text = re.sub(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)
  return _FIGURE.sub("", text)
