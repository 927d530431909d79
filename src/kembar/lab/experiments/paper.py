"""The figures the paper published (section 4), to be shown beside the lab's own.

The paper prints its sync speeds as "Mb/s"; they are most likely MB/s (its 1 GB runs take
about 33 s), and are shown as MB/s here, as in ``shared/paper/SUMMARY.md``.
"""

from __future__ import annotations

from statistics import mean

# Table 4.2-4.4: "synchronisation speed", ten runs per size (MB/s).
SYNC_RUNS: dict[str, tuple[float, ...]] = {
    "100M": (64.10, 51.29, 53.48, 64.10, 42.47, 45.25, 56.18, 46.51, 37.41, 46.37),
    "500M": (36.3, 30.4, 34.0, 37.2, 35.0, 32.8, 36.0, 32.1, 32.2, 36.1),
    "1G": (32.4, 31.3, 28.7, 28.9, 30.0, 31.4, 32.1, 31.5, 32.2, 31.9),
}
SYNC_MEANS: dict[str, float] = {size: round(mean(runs), 1) for size, runs in SYNC_RUNS.items()}

FAILOVER_SECONDS = 3.0  # "about 3 s on average" (node1 fails, node2 serves)
FAILBACK_SECONDS = 5.0  # "about 5 s" (node1 returns and takes over, auto_failback on)

MEMORY_READ_MBS = 4398.42  # its memory read
DISK_READ_MBS = 210.51  # its disk read

SETUP = ("two Ubuntu 14.04 virtual machines on one Proxmox VE host, DRBD 8 and Heartbeat "
         "3, one virtual switch; ha.cf keepalive 2 s, deadtime 15 s, auto_failback on")
