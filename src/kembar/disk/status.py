"""Human status text, shaped like ``drbdadm status``."""

from __future__ import annotations

from typing import Any

from kembar.config.units import format_size


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_status(st: dict[str, Any]) -> str:
    peer = st["peer"]
    lines = [f"{st['disk']} role:{st['role']} disk:{st['disk_state']} protocol:{st['protocol']}"
             f" size:{format_size(st['size'])}"]
    conn = f"  {peer['node']} connection:{peer['connection']}"
    if peer["connection"] == "Connected":
        conn += (f" role:{peer['role']} peer-disk:{peer['disk_state']}"
                 f" replication:{peer['replication']}")
    lines.append(conn)
    sync = st.get("sync")
    if sync:
        rate = f"{format_size(sync['rate'])}/s"
        lines.append(f"    done:{sync['done_percent']:.1f}% rate:{rate} "
                     f"eta:{_eta(sync['eta_seconds'])} remaining:{format_size(sync['remaining'])}")
    c = st["counters"]
    lines.append(f"    out-of-sync:{format_size(st['out_of_sync'])} sent:{format_size(c['sent'])} "
                 f"received:{format_size(c['received'])} resync-sent:{format_size(c['rs_sent'])} "
                 f"resync-received:{format_size(c['rs_received'])} al-writes:{c['al_writes']}")
    blk = st.get("block")
    if blk:
        dev = f"{blk['device']} -> {blk['loop']}" if blk.get("device") else "none (Secondary)"
        io = blk["io"]
        lines.append(f"    device:{dev} open:{blk['open']} reads:{io['reads']} "
                     f"writes:{io['writes']} fsyncs:{io['fsyncs']} flushes:{c['flushes']} "
                     f"peer-flushes:{c['peer_flushes']}")
    if c["protocol_errors"] or c["auth_failures"]:
        lines.append(f"    protocol-errors:{c['protocol_errors']} "
                     f"auth-failures:{c['auth_failures']}")
    if st.get("disk_state") == "Diskless" and st.get("diskless_reason"):
        lines.append(f"    diskless: {st['diskless_reason']} (on-io-error "
                     f"{st.get('on_io_error', 'detach')}; repair, then `kembar disk attach`)")
    if c.get("io_errors"):
        lines.append(f"    io-errors:{c['io_errors']} peer-reads:{c.get('peer_reads', 0)}")
    if st.get("last_error"):
        lines.append(f"    last-error: {st['last_error']}")
    if st.get("verify"):
        v = st["verify"]
        lines.append(f"    last verify: {v['out_of_sync_blocks']} blocks out of sync "
                     f"({format_size(v['out_of_sync_bytes'])}) in {v['seconds']}s")
    return "\n".join(lines)
