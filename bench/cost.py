"""What each method's training costs on this machine: seconds per step,
analytic FLOPs per step, and both for a whole run of the length its record
was trained for.

  python bench/cost.py --out bench/results/cpu_cost.json     # every method, minutes
  python bench/cost.py --cases asb pretrain --steps 2 --repeats 1

Each case is the method's default config (the paper's sizes) with the
overrides its run used; its step is compiled into a chunk of ``--steps``
steps (one dispatch, as train.py runs it), warmed up, and the best of
``--repeats`` chunks is kept (bench/meta_step.py's ``bench_case``). The
machine's dense float32 matmul rate is measured first, to compare machines. A run's
hours are its steps times that step time: the machine to itself, no
checkpoints or logging. Zapping adds a row redraw per step, nothing
measurable, so the zapped and unzapped runs share a case. report.py puts
these figures beside each method's accuracy at 600 classes.
"""
import argparse

import flops
import meta_step
import output

from anml_jax import configs

# name: (method, config overrides, steps of the recorded run)
CASES = {
    "anml": ("anml", {}, 20000),
    "anml_first_order": ("anml", {"first_order": True}, 20000),
    "oml": ("oml", {}, 20000),
    "asb": ("asb", {}, 9000),
    "pretrain": ("pretrain", {}, 2000),
    # runs/streamhead_anml_w100 (HISTORY.md): 600 steps from ANML's parameters
    "streamhead": ("streamhead", {"ways": 100, "shots": 2, "queries": 1}, 600),
    # runs/streamhead_s20k and _nogate_s20k: the default 30 ways x (4 + 3), from scratch
    "streamhead_scratch": ("streamhead", {}, 20000),
    "streamhead_scratch_ungated": ("streamhead", {"model": {"gate": False}}, 20000),
}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
  p.add_argument("--config", default="default", choices=configs.NAMES)
  p.add_argument("--steps", type=int, default=3, help="steps per timed chunk")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  output.claim(args.out)
  rate = flops.matmul_rate()
  print(f"dense float32 matmul (2048^3): {rate / 1e9:.1f} GFLOP/s", flush=True)
  rows = []
  for name in args.cases:
    method, overrides, run_steps = CASES[name]
    cfg = configs.get_config(args.config, method)
    cfg.update(overrides)
    r = meta_step.bench_case(cfg, args.steps, args.repeats)
    row = {"case": name, "method": method, "overrides": overrides, "run_steps": run_steps,
           "s_per_step": r["s_per_step"], "s_per_step_all": r["s_per_step_all"],
           "compile_s": r["compile_s"], "flops_per_step": flops.training_step_flops(cfg),
           "run_hours": run_steps * r["s_per_step"] / 3600}
    row["run_flops"] = row["flops_per_step"] * run_steps
    rows.append(row)
    print(f"{name:17s} {row['s_per_step']:7.3f} s/step  {row['flops_per_step'] / 1e9:7.1f} "
          f"GFLOP/step  {run_steps:6d} steps: {row['run_hours']:6.2f} h, "
          f"{row['run_flops'] / 1e15:6.3f} PFLOP", flush=True)
  output.write(args.out, {"matmul_flops_per_s": rate, "config": args.config,
                          "steps": args.steps, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
  main()
