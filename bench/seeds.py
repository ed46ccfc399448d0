"""Seeds per program: K seeds trained in one jitted program (a vmapped step
over a stacked state, ``--config.seeds=K``) against K separate processes of
one seed each, on the same device, at the same time.

  python bench/seeds.py --seeds 1 4 8 --out bench/results/gpu_seeds_h200.json
  python bench/seeds.py --seeds 4 --no-processes --set model.conv_impl=xla   # another lowering
  python bench/seeds.py --config smoke --seeds 1 2 --steps 2 --repeats 1   # seconds on a CPU

Every case runs in fresh processes (so no case's memory or compile cache is
another's). For each K it reports trajectories/s (K x meta_batch x
meta-steps per second) and device memory: the device's peak bytes in the
process where it keeps count (GPU), else the compiled program's argument,
output and temporary bytes (XLA's memory analysis), summed over processes.
The processes compile and warm up, wait at a common start, run the same
chunks, and their throughput is all trajectories over the span from the
first start to the last end. On a GPU each of K processes gets 0.9 / K of
its memory (XLA_PYTHON_CLIENT_MEM_FRACTION).
"""
import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import output

from anml_jax import cli, configs, data, meta, methods, models


def program(cfg, steps: int):
  """(compiled chunk, state, images) of ``cfg``'s seeds in one program."""
  net = methods.network(cfg)
  images = jax.numpy.asarray(data.synthetic(0, background=cfg.num_train_classes,
                                            evaluation=1, raw=True).background)
  state = meta.init_state(cfg, net)
  step = meta.over_seeds(methods.get(cfg.method).make_step(cfg, net), int(cfg.seeds))
  chunk = jax.jit(meta.make_train_chunk(step, steps))
  return chunk.lower(state, images).compile(), state, images


def memory_bytes(compiled) -> int | None:
  """The device's peak bytes in use if it counts them, else the compiled
  program's arguments + outputs + temporaries."""
  peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
  if peak is not None:
    return int(peak)
  m = compiled.memory_analysis()
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def warm(compiled, state, images):
  """Runs the chunk once (the first call's one-off costs); returns the state."""
  state, m = compiled(state, images)
  jax.block_until_ready(m)
  return state


def timed(compiled, state, images, repeats: int):
  """Runs ``repeats`` chunks; returns their (start, end) wall times (time.time())."""
  t0 = time.time()
  for _ in range(repeats):
    state, m = compiled(state, images)
  jax.block_until_ready(m)
  return t0, time.time()


def config(name: str, seeds: int, sets: list[str]):
  """``name`` = CONFIG:METHOD (configs.get_config) with ``seeds`` seeds and
  the ``KEY=VALUE`` overrides ``sets`` (KEY a dotted path, VALUE a Python
  literal or a bare string), e.g. ``model.conv_impl=xla``."""
  cfg = configs.get_config(*name.split(":"))
  cfg.seeds = seeds
  for s in sets:
    key, _, text = s.partition("=")
    try:
      models.get_path(cfg, key.split("."))
    except (KeyError, AttributeError):
      raise SystemExit(f"--set {s}: the config has no key {key!r}") from None
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    cli.set_path(cfg, key, value)
  configs.validate(cfg)
  return cfg


def launch(name: str, seeds_each: int, processes: int, steps: int, repeats: int,
           sets: list[str]) -> dict:
  """``processes`` fresh processes, each training ``seeds_each`` seeds in one
  program, timed from a common start once all are compiled and warm; their
  throughput is all trajectories over the span from the first start to the
  last end, their memory the sum of theirs."""
  env = dict(os.environ)
  if jax.default_backend() == "gpu" and processes > 1:
    env.update(XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / processes:.3f}",
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
  config_name, method = name.split(":")
  with tempfile.TemporaryDirectory() as tmp:
    outs = [os.path.join(tmp, f"{i}.json") for i in range(processes)]
    go = os.path.join(tmp, "go")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", go, o, "--config",
                               config_name, "--method", method, "--seeds", str(seeds_each),
                               "--steps", str(steps), "--repeats", str(repeats),
                               "--set", *sets], env=env)
             for o in outs]
    while not all(os.path.isfile(o + ".ready") for o in outs):   # all compiled, warm
      if any(p.poll() not in (None, 0) for p in procs):
        raise RuntimeError("a worker process failed")
      time.sleep(0.2)
    with open(go + ".tmp", "w") as f:
      f.write(repr(time.time() + 1.0))
    os.replace(go + ".tmp", go)
    for p in procs:
      if p.wait() != 0:
        raise RuntimeError("a worker process failed")
    rows = [json.load(open(o)) for o in outs]
  span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
  memory = [r["device_bytes"] for r in rows]
  return {"seeds": seeds_each * processes,
          "how": "one program" if processes == 1 else "separate processes",
          "compile_s": max(r["compile_s"] for r in rows), "seconds": span,
          "trajectories_per_s": sum(r["trajectories"] for r in rows) / span,
          "device_bytes": None if None in memory else sum(memory)}


def worker(go: str, out: str, name: str, seeds: int, steps: int, repeats: int,
           sets: list[str]) -> None:
  cfg = config(name, seeds, sets)
  t0 = time.perf_counter()
  compiled, state, images = program(cfg, steps)
  compile_s = time.perf_counter() - t0
  state = warm(compiled, state, images)
  open(out + ".ready", "w").close()
  while not os.path.isfile(go):
    time.sleep(0.05)
  with open(go) as f:
    time.sleep(max(0.0, float(f.read()) - time.time()))   # the common start
  start, end = timed(compiled, state, images, repeats)
  with open(out, "w") as f:
    json.dump({"start": start, "end": end, "compile_s": compile_s,
               "device_bytes": memory_bytes(compiled),
               "trajectories": seeds * cfg.meta_batch * steps * repeats}, f)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=configs.NAMES)
  p.add_argument("--method", default="anml", help="a trained method of anml_jax.methods")
  p.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8])
  p.add_argument("--steps", type=int, default=20, help="meta-steps per chunk")
  p.add_argument("--repeats", type=int, default=3, help="chunks timed")
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                 help="config overrides, e.g. model.conv_impl=xla")
  p.add_argument("--no-processes", action="store_true",
                 help="skip the separate-process comparison")
  p.add_argument("--out", default=None)
  p.add_argument("--worker", nargs=2, metavar=("GO", "OUT"), help=argparse.SUPPRESS)
  args = p.parse_args()
  output.claim(args.out)
  name = f"{args.config}:{args.method}"
  if args.worker:
    return worker(*args.worker, name, args.seeds[0], args.steps, args.repeats, args.set)
  config(name, 1, args.set)                   # a bad override fails here, not in a worker
  rows = []
  for k in args.seeds:
    shapes = [(k, 1)] + ([(1, k)] if k > 1 and not args.no_processes else [])
    for seeds_each, processes in shapes:
      r = launch(name, seeds_each, processes, args.steps, args.repeats, args.set)
      rows.append(r)
      print(f"K={k:2d} {r['how']:18s} {r['trajectories_per_s']:9.2f} traj/s  "
            f"device {(r['device_bytes'] or 0) / 2**30:6.2f} GiB", flush=True)
      one = next((r for r in rows if r["seeds"] == 1), None)
      for row in rows:
        row["over_one_seed"] = (row["trajectories_per_s"] / one["trajectories_per_s"]
                                if one else None)
      # Written after every case, so a run stopped at a time limit keeps those done.
      output.write(args.out, {"config": args.config, "method": args.method,
                              "set": args.set, "steps": args.steps,
                              "repeats": args.repeats, "rows": rows}, again=len(rows) > 1)


if __name__ == "__main__":
  main()
