"""A benchmark's JSON: its figures, what it ran on and the command that made it."""
import json
import os
import sys

from anml_jax import provenance


def write(path: str | None, figures: dict) -> dict:
  """``figures`` with the machine (:func:`provenance.machine`) and the command
  line (:func:`provenance.record`) added; written as JSON to ``path`` when
  one is given. Returns what it wrote."""
  script = os.path.join("bench", os.path.basename(sys.argv[0]))
  out = {**provenance.machine(), **figures,
         "provenance": provenance.record([script, *sys.argv[1:]])}
  if path:
    with open(path, "w") as f:
      json.dump(out, f, indent=2)
    print(f"wrote {path}")
  return out
