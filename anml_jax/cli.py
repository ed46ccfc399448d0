"""Command-line plumbing shared by train.py, evaluate.py and analyze.py.

Flags are absl's; configs are ml_collections config files (``configs/*.py``,
``--config=configs/oml.py:smoke``) whose fields are overridden in place with
``--config.KEY=VALUE`` (typed by the field: ``--config.steps=500``,
``--config.inner_params='("pln",)'``). Each call parses into its own
:class:`absl.flags.FlagValues`, so ``main(argv)`` can run many times in one
process (the tests do).
"""
import contextlib
import fcntl
import os
import sys
from typing import Callable, Iterator, Sequence

from absl import flags
from ml_collections import config_flags

from anml_jax import data


class UsageError(ValueError):
  """A bad or conflicting command line; the message says what to change."""


def parse(prog: str, argv: Sequence[str], doc: str,
          define: Callable[[flags.FlagValues, list], None],
          required: Sequence[str] = ()) -> flags.FlagValues | None:
  """Defines the flags with ``define(flag_values, full_argv)`` and parses
  ``argv`` (without the program name). Returns None after printing the help
  for ``--help``; raises :class:`UsageError` for a bad command line or a
  missing ``required`` flag."""
  full = [prog, *argv]
  fv = flags.FlagValues()
  flags.DEFINE_bool("help", False, "show this help and exit", flag_values=fv)
  try:
    define(fv, full)      # reads the config files and their overrides
    fv(full)
  except (flags.Error, ValueError) as e:
    lines = [l for l in str(e).splitlines() if l.strip()]
    if len(lines) > 2:    # a traceback from inside a config file: its head and cause
      lines = [lines[0], lines[-1]]
    raise UsageError(f"{' '.join(lines)} (see {prog} --help)") from None
  except (AttributeError, KeyError) as e:    # --config.KEY=... of no field
    while e.args and isinstance(e.args[0], Exception):
      e = e.args[0]
    detail = str(e.args[0] if e.args else e).replace("\n", "; ")
    raise UsageError(f"no such config field: {detail} (see {prog} --help)") from None
  if fv.help:
    print(doc.strip() + "\n\nflags:\n" + fv.get_help(include_special_flags=False))
    return None
  missing = [f"--{name}" for name in required if fv[name].value is None]
  if missing:
    raise UsageError(f"{', '.join(missing)} required (see {prog} --help)")
  return fv


def define_config(fv: flags.FlagValues, argv: list, name: str, default: str | None,
                  help_string: str) -> None:
  """A config-file flag ``--NAME=FILE[:ARG]`` with ``--NAME.KEY=VALUE``
  overrides read from ``argv``."""
  config_flags.DEFINE_config_file(name, default, help_string, flag_values=fv,
                                  sys_argv=argv, lock_config=True)


def overrides(fv: flags.FlagValues, name: str) -> dict:
  """{'a.b': value} of the ``--NAME.a.b=value`` flags given."""
  return dict(config_flags.get_override_values(fv[name]))


def set_path(cfg, path: str, value) -> None:
  """``cfg.a.b = value`` for ``path`` 'a.b'."""
  *parents, leaf = path.split(".")
  for p in parents:
    cfg = cfg[p]
  cfg[leaf] = value


def define_data_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string(
      "omniglot_dir", None, "folder with images_background.zip and "
      "images_evaluation.zip (default $ANML_OMNIGLOT_DIR or ../shared/omniglot)",
      flag_values=fv)
  flags.DEFINE_enum("data_source", "zip", ["zip", "tfds", "synthetic"],
                    "where Omniglot comes from (synthetic: random images, for tests)",
                    flag_values=fv)
  flags.DEFINE_string("cache_dir", None, "decoded-array cache folder", flag_values=fv)


def load_dataset(fv: flags.FlagValues, raw: bool = False) -> data.ClassSplit:
  """The data the flags name; ``raw``: uint8 images (:func:`data.load_omniglot`)."""
  if fv.data_source == "synthetic":
    return data.synthetic(raw=raw)
  return data.load_omniglot(fv.omniglot_dir, source=fv.data_source,
                            cache_dir=fv.cache_dir, raw=raw)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive(folder: str, program: str) -> Iterator[None]:
  """Holds ``folder`` (a run's workdir, an evaluation's --out) for this
  process for the block, so two commands never write one run or record at
  once: its file ``.lock``, locked with ``flock``, which the system releases
  when the process ends however it ends (SIGKILL too). A second process that
  asks meanwhile gets a :class:`UsageError` naming the holder (``program``
  and pid, which the lock file holds) before it has read or written anything
  there. The lock file goes on release (a killed holder's stays, unlocked,
  and the next holder takes it); a folder created here that is still empty
  then goes too (a command that failed leaves nothing behind)."""
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise UsageError(f"{folder} is a file: {program} writes its output into a folder there; "
                     "give another path. Nothing was changed.")
  created = not os.path.isdir(folder)
  path = os.path.join(folder, LOCK_FILE)
  while True:
    os.makedirs(folder, exist_ok=True)
    f = open(path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      pid, _, holder = f.read().strip().partition(" ")
      f.close()
      raise UsageError(f"{folder} is in use by another process ({holder or 'a command'}, "
                       f"pid {pid or 'unknown'}); wait for it to end or stop it, or give "
                       "another folder. Nothing was changed.") from None
    try:     # the holder before us may have removed the file as it let go
      if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
        break
    except FileNotFoundError:
      pass
    f.close()
  f.seek(0)
  f.truncate()
  f.write(f"{os.getpid()} {program}\n")
  f.flush()
  try:
    yield
  finally:
    os.remove(path)
    if created and not os.listdir(folder):
      os.rmdir(folder)
    f.close()


def fail(message) -> int:
  """Prints ``error: message`` to stderr; returns the exit status 1."""
  print(f"error: {message}", file=sys.stderr)
  return 1


def config_path(script: str, name: str) -> str:
  """The config file ``configs/NAME`` next to the entry point ``script``."""
  return os.path.join(os.path.dirname(os.path.abspath(script)), "configs", name)
