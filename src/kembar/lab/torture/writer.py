"""Runs on the node that holds the group: appends numbered records to a file on the
replicated filesystem, each one fsynced before its number is printed (acknowledged).

    python -m kembar.lab.torture.writer write --dir /srv/data/torture --name W [--rate 20]
    python -m kembar.lab.torture.writer dump --dir /srv/data/torture

``write`` refuses to start unless the directory's filesystem is a mount (never the node's
own root: records there would not be replicated) and ends at the first error (the
filesystem stopped under it).  ``dump`` prints ``== NAME`` and then each writer's file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def mounted_from(path: Path, mountinfo: str) -> str | None:
    """The source of the filesystem mounted exactly on ``path`` (pure; the last mount
    there wins), from /proc/self/mountinfo's text; None if nothing is mounted there."""
    source = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 9 and fields[4] == str(path) and "-" in fields:
            source = fields[fields.index("-") + 2]
    return source


def _replicated(path: Path) -> bool:
    source = mounted_from(path, Path("/proc/self/mountinfo").read_text())
    if source is None or not source.startswith("/dev/loop"):
        print(f"writer: {path} is not the replicated filesystem (mounted from {source})",
              file=sys.stderr)
        return False
    return True


def write(directory: Path, name: str, rate: float) -> int:
    # Exactly the replicated filesystem: a mount on the directory's parent from a loop
    # device (found by the torture: a check that walked up to the node's own /srv let
    # records go there, unreplicated, once the replicated filesystem had gone)
    if not _replicated(directory.parent):
        return 2
    directory.mkdir(exist_ok=True)
    fd = os.open(directory / f"{name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    seq = 0
    sys.stdout.write(f"pid {os.getpid()}\n")
    sys.stdout.flush()
    pause = 1.0 / rate if rate > 0 else 0.0
    try:
        while True:
            seq += 1
            line = f"{seq} {name}\n".encode()
            if os.write(fd, line) != len(line):
                print("writer: short write", file=sys.stderr)
                return 1
            os.fsync(fd)
            sys.stdout.write(f"{seq}\n")
            sys.stdout.flush()
            time.sleep(pause)
    except (OSError, BrokenPipeError) as exc:
        print(f"writer: {exc}", file=sys.stderr)
        return 1


def dump(directory: Path) -> int:
    # only the replicated filesystem: a bare /srv/data (unmounted for a moment while the
    # group restarts) would show no records at all (the torture once counted those lost)
    if not _replicated(directory.parent):
        return 2
    if not directory.is_dir():
        return 0
    for f in sorted(directory.glob("*.log")):
        sys.stdout.write(f"== {f.stem}\n")
        sys.stdout.write(f.read_text(errors="replace"))
        sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kembar.lab.torture.writer")
    p.add_argument("op", choices=["write", "dump"])
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--name", default="")
    p.add_argument("--rate", type=float, default=20.0)
    a = p.parse_args(argv)
    if a.op == "dump":
        return dump(a.dir)
    if not a.name or not a.name.replace("-", "").isalnum():
        p.error("write needs --name (letters, digits, dashes)")
    return write(a.dir, a.name, a.rate)


if __name__ == "__main__":
    sys.exit(main())
