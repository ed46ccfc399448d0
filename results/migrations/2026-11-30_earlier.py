"""Migration of 2026-11-30: records that lost blocks as they grew get them back.

``earlier`` (anml_jax/reporting.py, Results) keeps the forgetting (and
seconds) a record held before each longer stream replaced it. Two records were
committed while they grew, before it existed, and each later write replaced
the previous forgetting block:

* heads/anml_gaussian: committed four times while its evaluation ran (up to
  N = 100, 200, 300, ...); the same run then finished N = 600.
* heads/pretrain_prototype_cosine: committed while it ran, stopped at N = 500,
  then resumed with --resume to N = 600.

This reads every committed version of each record from git, oldest first, and
keeps in ``earlier`` each version's forgetting and seconds that the present
record no longer holds, with the commit it is read from (the N in between,
never committed, were not kept by the code of the time). Every other field is
left as it is; the finished rows of each version are checked to be the
present ones. Run once from the repo root:
``python results/migrations/2026-11-30_earlier.py`` (it refuses to run twice).
"""
import json
import subprocess

from anml_jax import reporting

RECORDS = ("results/heads/anml_gaussian/results.json",
           "results/heads/pretrain_prototype_cosine/results.json")


def git(*args: str) -> str:
  return subprocess.check_output(["git", *args], text=True)


for path in RECORDS:
  now = json.load(open(path))
  if "earlier" in now:
    raise SystemExit(f"{path} already has 'earlier'; nothing changed")
  earlier = []
  for rev in git("log", "--reverse", "--format=%h", "--", path).split():
    then = json.loads(git("show", f"{rev}:{path}"))
    assert then["per_n"] == now["per_n"][:len(then["per_n"])], (path, rev)
    if then["forgetting"] != now["forgetting"] and all(
        e["forgetting"] != then["forgetting"] for e in earlier):
      earlier.append({"forgetting": then["forgetting"], "seconds": then["seconds"],
                      "note": f"the committed version of git {rev}"})
  now["earlier"] = earlier
  reporting.atomic_write(path, json.dumps(now, indent=2))
  print(f"{path}: earlier <- forgetting at N = "
        f"{[e['forgetting']['classes'] for e in earlier]}")
