"""``/metrics``: a snapshot (``kembar.web.snapshot``) in Prometheus' text format.

A custom collector over one snapshot, made at scrape time: nothing is kept between
scrapes, so a figure is exactly what the daemon and the disks say now.  Counters are the
daemon's and the disk processes' own counts since they started (Prometheus' ``rate()``
handles their resets at a restart).  Enumerations (a disk's state, role, connection)
are one 0/1 series per possible value, so that a dashboard can sum or alert on them.

Names, labels and meanings:

* membership: ``kembar_node_up{node}``, ``kembar_link_up{node,link}``,
  ``kembar_late_heartbeats_total{node}``, ``kembar_dropped_packets_total{reason}`` (``own``
  counts this node's own broadcasts coming back: harmless),
  ``kembar_accepted_packets_total``, ``kembar_heartbeat_send_errors_total``,
  ``kembar_events_total{event}``, ``kembar_standby``;
* groups: ``kembar_group_running{group,node}``, ``kembar_group_failed{group,node}``,
  ``kembar_resource_started{group,resource}``, ``kembar_resource_fail_count{group,resource}``,
  ``kembar_resource_transitions_total{group,resource,action,result}`` (this node's starts
  and stops of each resource);
* disks of this node (absent while a disk process does not answer, see
  ``kembar_disk_status_ok``): ``kembar_disk_state{disk,state}``, ``kembar_disk_role{disk,role}``,
  ``kembar_disk_connection{disk,state}``, ``kembar_disk_replication{disk,state}``,
  ``kembar_disk_size_bytes``, ``kembar_disk_{sent,received,resync_sent,resync_received}_bytes_total``,
  ``kembar_disk_out_of_sync_bytes``, ``kembar_disk_resync_rate_bytes_per_second`` (0 when no
  resync runs), ``kembar_disk_resync_done_ratio`` (during a resync), error and event
  counters, and ``kembar_disk_write_latency_seconds{disk,protocol}`` (a histogram of the
  completed writes on the Primary; ``protocol="none"``: not replicated).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kembar.disk.states import ConnState, DiskState, Repl, Role

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STARTED = ("started", "running (clone)", "watching")
_DISK_COUNTERS = (
    ("sent", "sent_bytes", "Application data sent to the peer"),
    ("received", "received_bytes", "Application data received from the peer"),
    ("rs_sent", "resync_sent_bytes", "Resync data sent to the peer"),
    ("rs_received", "resync_received_bytes", "Resync data received from the peer"),
    ("al_writes", "activity_log_writes", "Activity-log commits"),
    ("flushes", "flushes", "Flushes completed on this node"),
    ("connects", "connects", "Connections established with the peer"),
    ("protocol_errors", "protocol_errors", "Connections dropped for a protocol error"),
    ("auth_failures", "auth_failures", "Peer authentications that failed"),
    ("io_errors", "io_errors", "I/O errors of the local backing store"),
)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else 0.0


class SnapshotCollector(Collector):
    """The metric families of one snapshot."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snap = snapshot

    def collect(self) -> Iterator[Metric]:
        st = self.snap.get("status") or {}
        yield from _membership(st)
        yield from _groups(st)
        yield from _disks(self.snap.get("disks") or {})


def render(snapshot: dict[str, Any]) -> bytes:
    """The text exposition of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


def _membership(st: dict[str, Any]) -> Iterator[Metric]:
    me = str(st.get("node", ""))
    nodes: dict[str, Any] = st.get("nodes") or {}
    up = GaugeMetricFamily("kembar_node_up", "1 if the node is alive for this node's "
                           "membership (this node itself included)", labels=["node"])
    if me:
        up.add_metric([me], 1)
    for name, n in sorted(nodes.items()):
        up.add_metric([name], 1 if n.get("state") == "up" else 0)
    yield up
    links = GaugeMetricFamily("kembar_link_up", "1 if heartbeats from the node arrive on "
                              "the link", labels=["node", "link"])
    late = CounterMetricFamily("kembar_late_heartbeats", "Heartbeats that came after the "
                               "warntime", labels=["node"])
    for name, n in sorted(nodes.items()):
        late.add_metric([name], _num(n.get("late")))
        for link, ls in sorted((n.get("links") or {}).items()):
            links.add_metric([name, link], 1 if ls.get("state") == "up" else 0)
    yield links
    yield late
    dropped = CounterMetricFamily("kembar_dropped_packets", "Heartbeat packets dropped, by "
                                  "reason", labels=["reason"])
    for reason, count in sorted((st.get("dropped") or {}).items()):
        dropped.add_metric([reason], _num(count))
    yield dropped
    yield CounterMetricFamily("kembar_accepted_packets", "Heartbeat packets accepted",
                              value=_num(st.get("accepted")))
    yield CounterMetricFamily("kembar_heartbeat_send_errors", "Heartbeats that could not "
                              "be sent", value=_num(st.get("send_errors")))
    events = CounterMetricFamily("kembar_events", "Cluster events recorded by this node's "
                                 "daemon, by kind", labels=["event"])
    for kind, count in sorted((st.get("event_counts") or {}).items()):
        events.add_metric([kind], _num(count))
    yield events
    manager = st.get("manager") or {}
    yield GaugeMetricFamily("kembar_standby", "1 while this node is in standby",
                            value=1 if manager.get("standby") else 0)


def _groups(st: dict[str, Any]) -> Iterator[Metric]:
    groups: dict[str, Any] = (st.get("manager") or {}).get("groups") or {}
    nodes = sorted({str(st.get("node", ""))} | set(st.get("nodes") or {}) - {""})
    running = GaugeMetricFamily("kembar_group_running", "1 on the node that runs the group",
                                labels=["group", "node"])
    failed = GaugeMetricFamily("kembar_group_failed", "1 on a node where the group failed "
                               "(it will not start there until it expires or a cleanup)",
                               labels=["group", "node"])
    started = GaugeMetricFamily("kembar_resource_started", "1 if the resource runs on this "
                                "node", labels=["group", "resource"])
    fails = GaugeMetricFamily("kembar_resource_fail_count", "Monitor failures of the "
                              "resource on this node (reset by a successful start or a "
                              "cleanup)", labels=["group", "resource"])
    moves = CounterMetricFamily("kembar_resource_transitions", "Starts and stops of the "
                                "resource on this node", labels=["group", "resource",
                                                                 "action", "result"])
    for name, g in sorted(groups.items()):
        on = set(g.get("running_on") or [])
        bad = set(g.get("failed_on") or [])
        for node in nodes:
            running.add_metric([name, node], 1 if node in on else 0)
            failed.add_metric([name, node], 1 if node in bad else 0)
        for r in g.get("resource_states") or []:
            res = str(r.get("resource", ""))
            started.add_metric([name, res], 1 if r.get("state") in _STARTED else 0)
            fails.add_metric([name, res], _num(r.get("fail_count")))
        for res, counts in sorted((g.get("transitions") or {}).items()):
            for key, count in sorted(counts.items()):
                action, _, result = key.partition("_")
                moves.add_metric([name, res, action, "failed" if result else "ok"],
                                 _num(count))
    yield from (running, failed, started, fails, moves)


def _disks(disks: dict[str, Any]) -> Iterator[Metric]:
    ok = GaugeMetricFamily("kembar_disk_status_ok", "1 if the disk process answered this "
                           "scrape (the other kembar_disk_ series exist only then)",
                           labels=["disk"])
    enums = [
        ("kembar_disk_state", "The local disk state (one series per state)", "state",
         [s.value for s in DiskState], lambda d: d.get("disk_state")),
        ("kembar_disk_role", "The local role (one series per role)", "role",
         [r.value for r in Role], lambda d: d.get("role")),
        ("kembar_disk_connection", "The connection to the peer (one series per state)",
         "state", [c.value for c in ConnState], lambda d: (d.get("peer") or {}).get("connection")),
        ("kembar_disk_replication", "The replication state (one series per state)", "state",
         [r.value for r in Repl], lambda d: (d.get("peer") or {}).get("replication")),
    ]
    enum_families = [(GaugeMetricFamily(n, doc, labels=["disk", lab]), values, get)
                     for n, doc, lab, values, get in enums]
    size = GaugeMetricFamily("kembar_disk_size_bytes", "Size of the disk", labels=["disk"])
    oos = GaugeMetricFamily("kembar_disk_out_of_sync_bytes", "Data marked out of sync "
                            "with the peer", labels=["disk"])
    rate = GaugeMetricFamily("kembar_disk_resync_rate_bytes_per_second", "Resync rate "
                             "(0 when no resync runs)", labels=["disk"])
    done = GaugeMetricFamily("kembar_disk_resync_done_ratio", "Part of the running resync "
                             "done (0 to 1)", labels=["disk"])
    counters = [(key, CounterMetricFamily(f"kembar_disk_{name}", doc, labels=["disk"]))
                for key, name, doc in _DISK_COUNTERS]
    latency = HistogramMetricFamily("kembar_disk_write_latency_seconds", "Latency of the "
                                    "writes completed on the Primary, by the protocol that "
                                    "completed them (none: not replicated)",
                                    labels=["disk", "protocol"])
    for name, d in sorted(disks.items()):
        ok.add_metric([name], 1 if d else 0)
        if not d:
            continue
        for fam, values, get in enum_families:
            current = get(d)
            for v in values:
                fam.add_metric([name, v], 1 if v == current else 0)
        size.add_metric([name], _num(d.get("size")))
        oos.add_metric([name], _num(d.get("out_of_sync")))
        sync = d.get("sync") or {}
        rate.add_metric([name], _num(sync.get("rate")))
        if sync:
            done.add_metric([name], _num(sync.get("done_percent")) / 100)
        c = d.get("counters") or {}
        for key, counter in counters:
            counter.add_metric([name], _num(c.get(key)))
        wl = d.get("write_latency") or {}
        bounds = [float(b) for b in wl.get("bounds") or []]
        for proto, h in sorted((wl.get("protocols") or {}).items()):
            counts = list(h.get("counts") or [])
            if len(counts) != len(bounds) + 1:
                continue  # not what this version writes: leave it out rather than lie
            cumulative, buckets = 0, []
            for le, n in zip([*(repr(b) for b in bounds), "+Inf"], counts):
                cumulative += int(n)
                buckets.append((le, cumulative))
            latency.add_metric([name, proto], buckets, sum_value=_num(h.get("sum")))
    yield ok
    for fam, _, _ in enum_families:
        yield fam
    yield from (size, oos, rate, done)
    for _, counter in counters:
        yield counter
    yield latency
