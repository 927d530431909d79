"""Shared fixtures of the agent tests: a private directory and context, script writers.

Everything made here is named ``kb-agt-…`` and removed afterwards, also on failure.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

import pytest

from kembar.agents.base import AgentContext


@pytest.fixture
def kbdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("kb-agt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ctx(kbdir: Path) -> AgentContext:
    return AgentContext(run_dir=str(kbdir / "kb-agt-run"), state_dir=str(kbdir / "kb-agt-state"),
                        group="kb-agt-g", init_dir=str(kbdir / "kb-agt-init.d"),
                        systemd_dir=str(kbdir / "kb-agt-no-systemd"),
                        ha_resource_dir=str(kbdir / "kb-agt-resource.d"),
                        ocf_root=str(kbdir / "kb-agt-ocf"))


def write_script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


LSB_SCRIPT = """#!/bin/sh
# An LSB init script keeping its state in a file beside itself.
STATE="$0.kb-agt-state"
case "$1" in
  start) echo start >> "$STATE.log"; touch "$STATE"; exit 0 ;;
  stop) rm -f "$STATE"; exit 0 ;;
  status)
    [ -e "$0.kb-agt-broken" ] && { echo "cannot tell" >&2; exit 4; }
    [ -e "$STATE" ] && { echo "running"; exit 0; }
    echo "stopped"; exit 3 ;;
  *) exit 2 ;;
esac
"""

# Heartbeat resource.d style: SCRIPT ARG1 ARG2 ACTION; status is read from the output.
HB_SCRIPT = """#!/bin/sh
STATE="$1"
for a; do ACTION="$a"; done
echo "$*" >> "$STATE.log"
case "$ACTION" in
  start) [ -e "$STATE.fail-start" ] && { echo "no luck" >&2; exit 1; }
         echo "$2" > "$STATE"; exit 0 ;;
  stop) [ -e "$STATE.fail-stop" ] && { echo "stuck" >&2; exit 1; }
        rm -f "$STATE"; exit 0 ;;
  status) if [ -e "$STATE" ]; then echo "resource is running"; else echo "resource is stopped"; fi
          exit 0 ;;
esac
exit 1
"""

OCF_SCRIPT = """#!/bin/sh
S="$OCF_RESKEY_state"
env | grep '^OCF_' | sort > "$S.env"
case "$1" in
  start) [ -n "$OCF_RESKEY_start_rc" ] && exit "$OCF_RESKEY_start_rc"
         touch "$S"; exit 0 ;;
  stop) rm -f "$S"; exit 0 ;;
  monitor) [ -e "$S.broken" ] && { echo "confused" >&2; exit 1; }
           [ -e "$S" ] && exit 0; exit 7 ;;
esac
exit 3
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(") ")[2][:1] not in ("Z", "X")
    except OSError:
        return False


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
