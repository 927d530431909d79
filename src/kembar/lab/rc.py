"""What a lab node starts at boot, as systemd would start kembar's enabled units.

Run on the node (``python -m kembar.lab.rc``) by ``kembar lab boot`` and ``lab up``: with a
cluster file at ``/etc/kembar/cluster.toml``, every disk that has a section for this node
is brought up (``kembar disk up``), whose metadata exists, and with a ``[membership]``
table the cluster daemon is started.  Output goes to
``/run/kembar/boot.log``.  Nothing is promoted: roles are the cluster manager's business.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from kembar.config.model import DEFAULT_CONFIG_PATH, ClusterConfig, load_cluster
from kembar.errors import KembarError

LOG = Path("/run/kembar/boot.log")


def boot_commands(config: ClusterConfig, node: str) -> list[list[str]]:
    """The commands a node runs at boot (pure): its disks up, then the cluster daemon
    (started in the background) if the file has a ``[membership]`` table."""
    cmds = [["kembar", "disk", "up", name] for name, disk in sorted(config.disks.items())
            if node in disk.on]
    if config.membership is not None:
        cmds.append(["kembar", "daemon"])
    return cmds


def main() -> int:
    node = socket.gethostname()
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if not DEFAULT_CONFIG_PATH.exists():
            log.write(f"{stamp} {node}: no {DEFAULT_CONFIG_PATH}; nothing to start\n")
            return 0
        try:
            config = load_cluster(DEFAULT_CONFIG_PATH)
        except KembarError as exc:
            log.write(f"{stamp} {node}: {exc}\n")
            return 1
        rc = 0
        for cmd in boot_commands(config, node):
            if cmd[1] == "daemon":  # long-running: detached, as its service would be
                with open("/run/kembar/daemon.log", "ab") as out:
                    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
                log.write(f"{stamp} {node}: {' '.join(cmd)}: started\n")
                continue
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            log.write(f"{stamp} {node}: {' '.join(cmd)}: exit {res.returncode} "
                      f"{(res.stdout + res.stderr).strip()}\n")
            rc = rc or res.returncode
        return rc


if __name__ == "__main__":
    sys.exit(main())
