"""A snapshot as the web server makes it (``kembar.web.snapshot``): node1 runs group web,
node2 is dead, disk r0 is Primary and resyncing to node2 (shapes as the daemon and the disk
process write them)."""

from __future__ import annotations

import copy
from typing import Any

from kembar.disk.latency import BOUNDS

_COUNTS = [0] * (len(BOUNDS) + 1)
_COUNTS[3], _COUNTS[5], _COUNTS[-1] = 4, 2, 1

STATUS: dict[str, Any] = {
    "node": "node1", "cluster": "kb", "pid": 1, "incarnation": 3, "started": 1.7e9,
    "timing": {"keepalive": 0.1, "deadtime": 0.5, "warntime": 0.25, "initdead": 3.0},
    "links": ["eth0"], "media": ["bcast eth0:694"], "send_errors": 2,
    "members": ["node1"],
    "nodes": {"node2": {"state": "dead", "reason": "deadtime", "incarnation": 5,
                        "last_heard": 3.2, "since": 2.7, "late": 7, "ping": None,
                        "links": {"eth0": {"state": "dead", "last_heard": 3.2}}}},
    "dropped": {"own": 120, "mac": 3, "replay": 1}, "accepted": 4000,
    "ping": {"score": 0, "total": 0, "nodes": {}},
    "events": [{"time": 1.7e9, "event": "NodeDead", "text": "node2 is dead (deadtime)",
                "node": "node2"}],
    "event_counts": {"NodeDead": 1, "NodeUp": 2, "GroupStarted": 1},
    "realtime": "off",
    "manager": {
        "groups": {"web": {
            "preferred": "node1", "auto_failback": True, "running_on": ["node1"],
            "here": "running", "failed_here": "", "fail_counts": {"service site": 1},
            "last_error": "", "since": 1.7e9, "decisions": ["web: keep it on node1"],
            "failed_on": ["node2"], "resources": ["disk r0", "service site", "ip 198.18.0.100"],
            "clones": {},
            "resource_states": [
                {"resource": "disk r0", "state": "started", "fail_count": 0},
                {"resource": "service site", "state": "started", "fail_count": 1},
                {"resource": "ip 198.18.0.100", "state": "stop FAILED", "fail_count": 0}],
            "transitions": {"disk r0": {"start": 2, "stop": 1},
                            "ip 198.18.0.100": {"start": 1, "stop_failed": 1}}}},
        "standby": False, "wishes": {}, "disks": {}, "fenced": {}, "deciding": True},
}

DISK: dict[str, Any] = {
    "disk": "r0", "node": "node1", "role": "Primary", "disk_state": "UpToDate",
    "size": 64 * 2**20, "protocol": "C",
    "peer": {"node": "node2", "connection": "Connected", "role": "Secondary",
             "disk_state": "Inconsistent", "replication": "SyncSource"},
    "out_of_sync": 8 * 2**20,
    "uuids": {"current": "00000000000000A1", "bitmap": "0", "history": []},
    "counters": {"sent": 5 * 2**20, "received": 0, "rs_sent": 3 * 2**20, "rs_received": 0,
                 "al_writes": 9, "flushes": 4, "peer_flushes": 0, "protocol_errors": 1,
                 "auth_failures": 0, "connects": 2, "io_errors": 0, "peer_reads": 0},
    "write_latency": {"bounds": list(BOUNDS),
                      "protocols": {"C": {"counts": _COUNTS, "count": 7, "sum": 20.5}}},
    "last_error": "", "verify": None, "crashed_primary": False, "on_io_error": "detach",
    "disk_failed": False, "diskless_reason": "",
    "sync": {"done_percent": 27.3, "rate": 4 * 2**20, "eta_seconds": 2.0,
             "remaining": 8 * 2**20},
}


def snapshot() -> dict[str, Any]:
    return {"time": 1.7e9, "node": "node1", "status": copy.deepcopy(STATUS),
            "disks": {"r0": copy.deepcopy(DISK), "r1": None},
            "disk_errors": {"r1": "disk r1 is not up on this node"}}
