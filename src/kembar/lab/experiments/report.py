"""The report of a run of the experiments: Markdown with tables like the paper's, PNG
charts like its Figures 7 and 8, and the results as JSON — every number from the run,
the paper's beside them (``kembar.lab.experiments.paper``).

Results (one JSON document; each experiment fills its part, any part may be missing)::

    {"kind": "kembar-lab-results", "version": 1,
     "machine": {"host", "cpu", "cpus", "memory_mib", "kernel", "python", "kembar", "when"},
     "sync": {"protocol": "C",
              "runs": [{"size": "100M", "bytes": N, "mbs": [per run]}],
              "catchup": [{"size": "100M", "bytes": N, "seconds": [per run]}],
              "local_ext4": [{"size": "100M", "bytes": N, "mbs": [per run]}],
              "tcp_mbs": x, "memory_read_mbs": x, "disk_read_mbs": x},
     "failover": {"timing": "paper", "keepalive": 2.0, "deadtime": 15.0, "group": "full",
                  "systems": {"kembar": [{"outage": s, "steps": [{"step": "...",
                                                                  "at": s}]}],
                              "heartbeat": [...]},
                  "notes": ["...", ...]},
     "failback": {same as failover}}

``at`` is seconds since the fault (failover: the crash; failback: kembar's, node1's
boot; Heartbeat's, its start on node1 once node1 is back).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from kembar.errors import KembarError
from kembar.lab.experiments import paper

KIND = "kembar-lab-results"
VERSION = 1
MB = 1_000_000  # MB/s as the paper (and dd) count them


class ResultsError(KembarError):
    """Results that cannot be reported: the message says where and what."""


# ------------------------------------------------------------------ machine, loading

def machine_info(kembar_rev: str = "") -> dict[str, Any]:
    """What the run ran on (reads /proc; nothing is started)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = next((int(line.split()[1]) // 1024 for line in fh
                        if line.startswith("MemTotal:")), 0)
    except (OSError, ValueError):
        pass
    return {"host": platform.node(), "cpu": cpu or platform.processor() or "unknown",
            "cpus": os.cpu_count() or 0, "memory_mib": mem, "kernel": platform.release(),
            "python": platform.python_version(), "kembar": kembar_rev,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def new_results(kembar_rev: str = "") -> dict[str, Any]:
    return {"kind": KIND, "version": VERSION, "machine": machine_info(kembar_rev)}


def load_results(path: Path) -> dict[str, Any]:
    """A results file, checked; ``ResultsError`` names the file and the problem."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: not JSON: {exc}") from None
    check_results(doc, str(path))
    return dict(doc)


def _numbers(value: Any, where: str, positive: bool = True) -> list[float]:
    if not isinstance(value, list) or not value or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and (x > 0 if positive else x >= 0) for x in value):
        raise ResultsError(f"{where}: a non-empty list of "
                           f"{'positive' if positive else 'non-negative'} numbers")
    return [float(x) for x in value]


def _sized(rows: Any, where: str, key: str) -> None:
    if not isinstance(rows, list):
        raise ResultsError(f"{where}: a list of sizes")
    for i, row in enumerate(rows):
        w = f"{where}[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("size"), str) or \
                not isinstance(row.get("bytes"), int) or row["bytes"] <= 0:
            raise ResultsError(f"{w}: needs size (text) and bytes (a positive integer)")
        _numbers(row.get(key), f"{w}.{key}")


def _events(doc: Any, where: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("systems"), dict) or \
            not doc["systems"]:
        raise ResultsError(f"{where}: needs systems (a table of system → runs)")
    for name, runs in doc["systems"].items():
        if not isinstance(runs, list) or not runs:
            raise ResultsError(f"{where}.systems.{name}: a non-empty list of runs")
        for i, run in enumerate(runs):
            w = f"{where}.systems.{name}[{i}]"
            if not isinstance(run, dict):
                raise ResultsError(f"{w}: a table")
            _numbers([run.get("outage")], f"{w}.outage", positive=False)
            steps = run.get("steps", [])
            if not isinstance(steps, list) or not all(
                    isinstance(s, dict) and isinstance(s.get("step"), str)
                    and isinstance(s.get("at"), (int, float)) for s in steps):
                raise ResultsError(f"{w}.steps: a list of {{step, at}}")
    notes = doc.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ResultsError(f"{where}.notes: a list of texts")


def check_results(doc: Any, where: str = "results") -> None:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ResultsError(f"{where}: not kembar lab results (kind {KIND!r} missing)")
    if doc.get("version") != VERSION:
        raise ResultsError(f"{where}: version {doc.get('version')!r}, this kembar reads "
                           f"{VERSION}")
    if not isinstance(doc.get("machine"), dict):
        raise ResultsError(f"{where}: machine missing")
    sync = doc.get("sync")
    if sync is not None:
        if not isinstance(sync, dict):
            raise ResultsError(f"{where}.sync: a table")
        _sized(sync.get("runs", []), f"{where}.sync.runs", "mbs")
        _sized(sync.get("catchup", []), f"{where}.sync.catchup", "seconds")
        _sized(sync.get("local_ext4", []), f"{where}.sync.local_ext4", "mbs")
        for key in ("tcp_mbs", "memory_read_mbs", "disk_read_mbs"):
            if sync.get(key) is not None:
                _numbers([sync[key]], f"{where}.sync.{key}")
    for part in ("failover", "failback"):
        if doc.get(part) is not None:
            _events(doc[part], f"{where}.{part}")


# ------------------------------------------------------------------------ markdown

def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def _f(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _sync_tables(sync: dict[str, Any]) -> list[str]:
    out = [f"## Sync speed: writes on the mounted replicated filesystem (protocol "
           f"{sync.get('protocol', '?')})", "",
           "Each run writes the size with `dd bs=1M conv=fsync` on node1's `/srv/data`; "
           "MB/s = 10^6 bytes per second, as the paper counts them.", ""]
    rows = sync.get("runs", [])
    if rows:
        runs = max(len(r["mbs"]) for r in rows)
        out.append("| size | " + " | ".join(f"run {i + 1}" for i in range(runs)) +
                   " | mean | paper's mean | × paper |")
        out.append("|---" * (runs + 4) + "|")
        for r in rows:
            cells = [_f(x) for x in r["mbs"]] + [""] * (runs - len(r["mbs"]))
            ref = paper.SYNC_MEANS.get(r["size"])
            m = _mean(r["mbs"])
            out.append(f"| {r['size']} | " + " | ".join(cells) + f" | **{_f(m)}** | " +
                       (f"{ref} | {m / ref:.1f}× |" if ref else "– | – |"))
        out.append("")
    local = {r["size"]: _mean(r["mbs"]) for r in sync.get("local_ext4", [])}
    if local or sync.get("tcp_mbs"):
        out += ["Baselines measured in the same run:", ""]
        for r in rows:
            if r["size"] in local:
                out.append(f"- {r['size']}: ext4 on a plain loop device (no replication) "
                           f"{_f(local[r['size']])} MB/s; replicated ÷ local = "
                           f"{_mean(r['mbs']) / local[r['size']]:.2f}")
        if sync.get("tcp_mbs"):
            out.append(f"- node-to-node TCP throughput: {_f(sync['tcp_mbs'])} MB/s")
        out.append("")
    catchup = sync.get("catchup", [])
    if catchup:
        out += ["Catch-up: node2 disconnected, the size written on node1, node2 reconnected; "
                "the resync's duration:", "", "| size | seconds (per run) | mean MB/s |",
                "|---|---|---|"]
        for r in catchup:
            secs = r["seconds"]
            out.append(f"| {r['size']} | " + ", ".join(f"{s:.2f}" for s in secs) +
                       f" | {_f(r['bytes'] / MB / _mean(secs))} |")
        out.append("")
    if sync.get("memory_read_mbs") and sync.get("disk_read_mbs"):
        mem, disk = sync["memory_read_mbs"], sync["disk_read_mbs"]
        out += ["| read | here MB/s | paper MB/s |", "|---|---|---|",
                f"| memory (page cache) | {_f(mem)} | {paper.MEMORY_READ_MBS} |",
                f"| disk (direct I/O) | {_f(disk)} | {paper.DISK_READ_MBS} |",
                f"| ratio | {mem / disk:.1f}× | "
                f"{paper.MEMORY_READ_MBS / paper.DISK_READ_MBS:.1f}× |", ""]
    return out


def _event_table(title: str, doc: dict[str, Any], reference: float) -> list[str]:
    group = f", group {doc['group']}" if doc.get("group") else ""
    out = [f"## {title} (keepalive {doc.get('keepalive', '?')} s, deadtime "
           f"{doc.get('deadtime', '?')} s: {doc.get('timing', '')}{group})", "",
           "Client-visible outage: a client polls the VIP over HTTP every 50 ms; last good "
           "reply before → first good reply after.", "",
           "| system | runs | outage per run (s) | median | max | paper |", "|---|---|---|---|---|---|"]
    for name, runs in doc["systems"].items():
        xs = [float(r["outage"]) for r in runs]
        out.append(f"| {name} | {len(xs)} | " + ", ".join(f"{x:.2f}" for x in xs) +
                   f" | **{statistics.median(xs):.2f}** | {max(xs):.2f} | ~{reference:g} |")
    out.append("")
    for name, runs in doc["systems"].items():
        steps = _median_steps(runs)
        if steps:
            out += [f"{title} timeline ({name}, median over the runs, seconds after the "
                    "fault):", "", "| step | at |", "|---|---|"]
            out += [f"| {s} | {at:.3f} |" for s, at in steps]
            out.append("")
    out += [f"- {n}" for n in doc.get("notes", [])]
    return out + ([""] if doc.get("notes") else [])


def _median_steps(runs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Each step seen in the runs, with the median of its times, in order."""
    seen: dict[str, list[float]] = {}
    for run in runs:
        for s in run.get("steps", []):
            seen.setdefault(s["step"], []).append(float(s["at"]))
    return sorted(((k, statistics.median(v)) for k, v in seen.items()), key=lambda kv: kv[1])


def render_markdown(res: dict[str, Any], charts: list[str] | None = None) -> str:
    check_results(res)
    m = res["machine"]
    out = ["# kembar: the paper's experiments, reproduced", "",
           f"Ran {m.get('when', '?')} on {m.get('host', '?')}: {m.get('cpu', '?')}, "
           f"{m.get('cpus', '?')} CPUs, {m.get('memory_mib', '?')} MiB, Linux "
           f"{m.get('kernel', '?')}, Python {m.get('python', '?')}, kembar "
           f"{m.get('kembar') or '?'}; the lab's nodes are network namespaces on this one "
           "machine.", "", f"The paper: {paper.SETUP}.", ""]
    if res.get("sync"):
        out += _sync_tables(res["sync"])
    if res.get("failover"):
        out += _event_table("Failover", res["failover"], paper.FAILOVER_SECONDS)
    if res.get("failback"):
        out += _event_table("Failback", res["failback"], paper.FAILBACK_SECONDS)
    for c in charts or []:
        out += [f"![{c}]({c})", ""]
    return "\n".join(out)


# -------------------------------------------------------------------------- charts

def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def sync_chart(sync: dict[str, Any], path: Path) -> None:
    """Figure 7's kind: the sync speed per run, one line per size, the paper's dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for i, r in enumerate(sync["runs"]):
        color = f"C{i}"
        xs = range(1, len(r["mbs"]) + 1)
        ax.plot(xs, r["mbs"], marker="o", color=color, label=f"kembar {r['size']}")
        ref = paper.SYNC_RUNS.get(r["size"])
        if ref:
            ax.plot(range(1, len(ref) + 1), ref, linestyle="--", marker="x", color=color,
                    alpha=0.6, label=f"paper {r['size']}")
    ax.set_xlabel("run")
    ax.set_ylabel("MB/s")
    ax.set_yscale("log")
    ax.set_title(f"Sync speed per run (protocol {sync.get('protocol', '?')})")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def timeline_chart(title: str, doc: dict[str, Any], path: Path) -> None:
    """Figure 8's kind: the steps of a failover on a time axis (median over the runs)."""
    plt = _plt()
    steps = _median_steps(doc["systems"].get("kembar", []))
    outages = {n: statistics.median(float(r["outage"]) for r in runs)
               for n, runs in doc["systems"].items()}
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * (len(steps) + len(outages))), dpi=100)
    y = 0
    labels = []
    for name, outage in outages.items():
        ax.barh(y, outage, color="C3" if name == "kembar" else "C7", alpha=0.7)
        labels.append(f"{name}: outage {outage:.2f} s")
        y += 1
    for step, at in steps:
        ax.plot([at], [y], marker="o", color="C0")
        labels.append(step[:60])
        y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds after the fault")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(res: dict[str, Any], out_dir: Path) -> Path:
    """report.md, results.json and the charts in ``out_dir``; the Markdown's path."""
    check_results(res)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = []
    if res.get("sync", {}).get("runs"):
        sync_chart(res["sync"], out_dir / "sync.png")
        charts.append("sync.png")
    for part, title in (("failover", "Failover"), ("failback", "Failback")):
        if res.get(part):
            timeline_chart(f"{title} timeline", res[part], out_dir / f"{part}.png")
            charts.append(f"{part}.png")
    (out_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = out_dir / "report.md"
    md.write_text(render_markdown(res, charts) + "\n")
    return md
