"""``/metrics`` from a snapshot: parsed back with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kembar.disk.latency import BOUNDS
from kembar.web.metrics import render
from tests.web.samples import snapshot


def samples(snap: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(snap).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def test_membership() -> None:
    got = samples(snapshot())
    assert value(got, "kembar_node_up", node="node1") == 1
    assert value(got, "kembar_node_up", node="node2") == 0
    assert value(got, "kembar_link_up", node="node2", link="eth0") == 0
    assert value(got, "kembar_late_heartbeats_total", node="node2") == 7
    assert value(got, "kembar_dropped_packets_total", reason="mac") == 3
    assert value(got, "kembar_dropped_packets_total", reason="replay") == 1
    assert value(got, "kembar_accepted_packets_total") == 4000
    assert value(got, "kembar_heartbeat_send_errors_total") == 2
    assert value(got, "kembar_events_total", event="NodeDead") == 1
    assert value(got, "kembar_standby") == 0


def test_groups_and_resources() -> None:
    got = samples(snapshot())
    assert value(got, "kembar_group_running", group="web", node="node1") == 1
    assert value(got, "kembar_group_running", group="web", node="node2") == 0
    assert value(got, "kembar_group_failed", group="web", node="node2") == 1
    assert value(got, "kembar_resource_started", group="web", resource="service site") == 1
    assert value(got, "kembar_resource_started", group="web", resource="ip 198.18.0.100") == 0
    assert value(got, "kembar_resource_fail_count", group="web", resource="service site") == 1
    t = "kembar_resource_transitions_total"
    assert value(got, t, group="web", resource="disk r0", action="start", result="ok") == 2
    assert value(got, t, group="web", resource="disk r0", action="stop", result="ok") == 1
    assert value(got, t, group="web", resource="ip 198.18.0.100", action="stop",
                 result="failed") == 1


def test_disks() -> None:
    got = samples(snapshot())
    assert value(got, "kembar_disk_status_ok", disk="r0") == 1
    assert value(got, "kembar_disk_status_ok", disk="r1") == 0
    assert not [k for k in got if k[0] != "kembar_disk_status_ok" and ("disk", "r1") in k[1]]
    assert value(got, "kembar_disk_sent_bytes_total", disk="r0") == 5 * 2**20
    assert value(got, "kembar_disk_received_bytes_total", disk="r0") == 0
    assert value(got, "kembar_disk_resync_sent_bytes_total", disk="r0") == 3 * 2**20
    assert value(got, "kembar_disk_out_of_sync_bytes", disk="r0") == 8 * 2**20
    assert value(got, "kembar_disk_resync_rate_bytes_per_second", disk="r0") == 4 * 2**20
    assert abs(value(got, "kembar_disk_resync_done_ratio", disk="r0") - 0.273) < 1e-9
    assert value(got, "kembar_disk_protocol_errors_total", disk="r0") == 1
    assert value(got, "kembar_disk_state", disk="r0", state="UpToDate") == 1
    assert value(got, "kembar_disk_state", disk="r0", state="Inconsistent") == 0
    assert value(got, "kembar_disk_role", disk="r0", role="Primary") == 1
    assert value(got, "kembar_disk_connection", disk="r0", state="Connected") == 1
    assert value(got, "kembar_disk_replication", disk="r0", state="SyncSource") == 1


def test_write_latency_histogram() -> None:
    got = samples(snapshot())
    h = "kembar_disk_write_latency_seconds"
    le = {float(dict(k[1])["le"]): v for k, v in got.items()
          if k[0] == h + "_bucket" and dict(k[1])["protocol"] == "C"}
    assert sorted(le) == [*BOUNDS, float("inf")]
    assert le[BOUNDS[2]] == 0 and le[BOUNDS[3]] == 4 and le[BOUNDS[5]] == 6  # cumulative
    assert le[BOUNDS[-1]] == 6 and le[float("inf")] == 7
    assert value(got, h + "_count", disk="r0", protocol="C") == 7
    assert value(got, h + "_sum", disk="r0", protocol="C") == 20.5


def test_a_histogram_of_another_shape_is_left_out() -> None:
    snap = snapshot()
    snap["disks"]["r0"]["write_latency"]["protocols"]["C"]["counts"] = [1, 2]
    got = samples(snap)
    assert not [k for k in got if k[0].startswith("kembar_disk_write_latency_seconds")]
    assert value(got, "kembar_disk_sent_bytes_total", disk="r0") == 5 * 2**20


def test_no_resync_rate_is_zero_and_an_empty_status_still_renders() -> None:
    snap = snapshot()
    del snap["disks"]["r0"]["sync"]
    got = samples(snap)
    assert value(got, "kembar_disk_resync_rate_bytes_per_second", disk="r0") == 0
    assert not [k for k in got if k[0] == "kembar_disk_resync_done_ratio"]
    empty = samples({"status": {}, "disks": {}})
    assert value(empty, "kembar_accepted_packets_total") == 0
