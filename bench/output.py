"""A benchmark's JSON: its figures, what it ran on and the command that made
it. A written JSON is a record: no benchmark replaces one (:func:`claim`)."""
import json
import os
import sys

from anml_jax import provenance, reporting


def claim(*paths: str | None) -> None:
  """Exits with a one-line message when one of ``paths`` exists, so a script
  calls it before it measures anything; None (no file asked for) passes."""
  for path in paths:
    if path and os.path.exists(path):
      raise SystemExit(f"{path} already exists: a benchmark's output is a record and "
                       "is never replaced; give another --out. Nothing was measured.")


def save(path: str, obj: dict, again: bool = False) -> None:
  """``obj`` as JSON at ``path``, written atomically; refused (:func:`claim`)
  where ``path`` exists, unless ``again``: the script claimed ``path`` as it
  began and writes it again as it goes, so a run stopped early keeps what
  it finished."""
  if not again:
    claim(path)
  reporting.atomic_write(path, json.dumps(obj, indent=2) + "\n")
  print(f"wrote {path}")


def write(path: str | None, figures: dict, again: bool = False) -> dict:
  """``figures`` with the machine (:func:`provenance.machine`) and the command
  line (:func:`provenance.record`) added; saved (:func:`save`, ``again`` as
  there) to ``path`` when one is given. Returns what it wrote."""
  script = os.path.join("bench", os.path.basename(sys.argv[0]))
  out = {**provenance.machine(), **figures,
         "provenance": provenance.record([script, *sys.argv[1:]])}
  if path:
    save(path, out, again)
  return out
