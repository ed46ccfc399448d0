"""Two meta-training runs side by side: their logged metrics step by step,
the largest relative difference, and both curves in one plot.

  python bench/loss_curves.py runs/a runs/b --labels "low-rank head" "dense head" \\
      --out bench/results/cpu_loss_curves_low_rank_head

Writes OUT.json (both runs' loss, inner loss and accuracy at every logged
step, and the relative differences) and OUT.png.
"""
import argparse
import os

import output

from anml_jax import reporting

KEYS = ("loss", "inner_loss", "accuracy")


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("runs", nargs=2, help="two run folders (their metrics.jsonl)")
  p.add_argument("--labels", nargs=2, default=None)
  p.add_argument("--out", required=True, help="path without extension")
  args = p.parse_args()
  output.claim(args.out + ".json", args.out + ".png")
  labels = args.labels or args.runs
  paths = [os.path.join(r, "metrics.jsonl") for r in args.runs]
  a, b = (reporting.read_metrics(path) for path in paths)
  if [r["step"] for r in a] != [r["step"] for r in b]:
    raise SystemExit("the two runs logged different steps; compare runs with the same "
                     "steps and log_every")
  rows = []
  for ra, rb in zip(a, b):
    row = {"step": ra["step"]}
    for k in KEYS:
      row[k] = [ra[k], rb[k]]
      row[f"{k}_rel_diff"] = abs(ra[k] - rb[k]) / max(abs(rb[k]), 1e-12)
    rows.append(row)
    print(f"step {row['step']:5d}  " + "  ".join(
        f"{k} {ra[k]:.4f} / {rb[k]:.4f}" for k in KEYS))
  out = {"labels": labels, "runs": args.runs, "rows": rows,
         "max_rel_diff": {k: max(r[f"{k}_rel_diff"] for r in rows) for k in KEYS}}
  print("largest relative difference:", out["max_rel_diff"])
  output.save(args.out + ".json", out)
  reporting.plot_training(dict(zip(labels, paths)), args.out + ".png")


if __name__ == "__main__":
  main()
