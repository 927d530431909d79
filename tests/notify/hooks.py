"""A hook script for the tests: it says what it was told."""

from __future__ import annotations

from pathlib import Path

# A hook that writes its environment to DIR/<local node>-<event>-<hook key>.env (DIR: its
# first argument), then sleeps for its second argument's seconds if there is one.
HOOK = """\
import os, sys, time
env = os.environ
name = os.path.join(sys.argv[1], "-".join(
    (env["KEMBAR_LOCAL_NODE"], env["KEMBAR_EVENT"], env["KEMBAR_HOOK"])))
with open(name + ".tmp", "w") as fh:
    for k, v in sorted(os.environ.items()):
        fh.write(f"{k}={v}\\n")
os.rename(name + ".tmp", name + ".env")
if len(sys.argv) > 2:
    print("sleeping", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())
