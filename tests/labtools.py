"""Helpers for tests that use the lab: what a lab left behind, who owns a lab."""

from __future__ import annotations

import os

from kembar.lab.lab import Lab


def leftovers(lab: Lab) -> list[str]:
    """Whatever of ``lab`` still exists: namespaces, mounts, loop devices, processes, files."""
    from kembar.disk import loopdev
    from kembar.lab import net

    out = [f"netns {n}" for n in net.existing(f"kb-{lab.name}-")]
    out += [f"mount {m.mountpoint}" for m in loopdev.mounts()
            if str(lab.dir) in m.mountpoint or m.fstype == "fuse.kembar-hw"
            and str(lab.dir) in m.mountpoint]
    out += [f"loop /dev/{n}" for n in loopdev.loop_devices()
            if str(lab.dir) in (loopdev.backing_file(n) or "")]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if str(lab.dir).encode() in fh.read():
                        out.append(f"process {entry}")
            except OSError:
                pass
    if lab.dir.exists():
        out.append(f"dir {lab.dir}")
    return out


def owner_alive(lab: Lab) -> bool:
    """A lab made by another, still running test session is that session's."""
    try:
        owner = int(lab.state().get("owner", 0))
    except Exception:  # noqa: BLE001 - no or damaged state: nobody owns it
        return False
    return owner not in (0, os.getpid()) and os.path.exists(f"/proc/{owner}")
