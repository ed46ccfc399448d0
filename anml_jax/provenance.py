"""Where an output came from: command line, code revision, packages, device."""
import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex",
            "ml-collections", "numpy", "scikit-learn")


def _git(*args: str) -> str | None:
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                         timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_model(cpuinfo: str | None = None) -> str:
  """The CPU's model name, family, model and widest vector extension from
  Linux's /proc/cpuinfo (or ``cpuinfo``, its text), e.g. "AMD EPYC (family
  26, model 2, avx512f)": a hypervisor may show every host as "AMD EPYC", and
  the rest tells two of them apart. Elsewhere the platform's word."""
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    except OSError:
      return platform.processor() or platform.machine()
  fields = {}
  for line in cpuinfo.splitlines():
    if not line.strip():
      break                                    # the first processor is enough
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  if "model name" not in fields:
    return platform.processor() or platform.machine()
  flags = fields.get("flags", "").split()
  simd = next((f for f in ("avx512f", "avx2", "avx", "sse2") if f in flags), None)
  extra = [f"family {fields['cpu family']}" if "cpu family" in fields else None,
           f"model {fields['model']}" if "model" in fields else None, simd]
  extra = ", ".join(e for e in extra if e)
  return fields["model name"] + (f" ({extra})" if extra else "")


def machine() -> dict:
  """{backend, device, jax, machine, cpu, cpu_count}: what a benchmark ran on."""
  return {"backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
          "jax": jax.__version__, "machine": platform.machine(), "cpu": cpu_model(),
          "cpu_count": os.cpu_count()}


def record(argv: list[str]) -> dict:
  """{command, git_revision, git_dirty, python, packages, backend, device,
  devices, processes, host, cpu, cpu_count, utc} for the running process;
  ``argv`` is the command line (program first). Git fields are None outside a
  checkout."""
  status = _git("status", "--porcelain", "--untracked-files=no")
  m = machine()
  return {
      "command": shlex.join([os.path.basename(sys.executable), *argv]),
      "git_revision": _git("rev-parse", "HEAD"),
      "git_dirty": None if status is None else bool(status),
      "python": platform.python_version(),
      "packages": {p: _version(p) for p in PACKAGES},
      "backend": m["backend"],
      "device": m["device"],
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "host": platform.platform(),
      "cpu": m["cpu"],
      "cpu_count": m["cpu_count"],
      "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
