"""A kembar cluster installed on the lab's nodes: the cluster file, the disk, the site.

What an operator does on two fresh servers, done by program on the lab's nodes: write
``/etc/kembar/cluster.toml`` and the disk's secret (mode 0600) on every node, create the
metadata, bring the disk up, make node1 Primary with ``--force`` (the first sync), put
ext4 on it and the demo site on that.  Until the cluster daemon exists (issues 5 and 6),
``take_over`` does by hand what its manager will do: promote, mount, add the VIP, start
the web server.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any

from kembar.errors import KembarError
from kembar.lab.lab import Lab
from kembar.lab.names import DISK_IN_NODE, PREFIXLEN, Plan
from kembar.lab.power import SECRET_IN_NODE as POWER_SECRET

DISK = "r0"
MOUNT = "/srv/data"
SITE_PORT = 80
SITE_PID = "/run/kembar/site.pid"
LOCAL_SITE = "/var/lib/kembar/site"  # the site's data without a replicated disk
GARP_TABLE = "kembar_garp"  # the client's nftables table that drops gratuitous ARP


MEDIA = ("bcast", "ucast", "mcast", "two")
MCAST_GROUP = "239.192.0.1"


def membership_toml(plan: Plan, media: str = "bcast", keepalive: str = "2s",
                    deadtime: str = "15s", warntime: str | None = None,
                    initdead: str | None = None, ping: list[str] | None = None) -> str:
    """A ``[membership]`` table for the lab (pure): ``media`` is bcast (eth0), ucast
    (eth0, to every node: the line to itself is skipped by each daemon), mcast (eth0) or
    two (bcast on eth0 and ucast on the private link eth1)."""
    if media not in MEDIA:
        raise KembarError(f"media {media!r}: use one of {', '.join(MEDIA)}")
    if media == "two" and not plan.private:
        raise KembarError("media 'two' needs the lab's private link (lab up --private)")
    lines = ["[membership]", f'keepalive = "{keepalive}"', f'deadtime = "{deadtime}"']
    if warntime:
        lines.append(f'warntime = "{warntime}"')
    if initdead:
        lines.append(f'initdead = "{initdead}"')
    lines.append('authkeys = "/etc/kembar/authkeys"')
    if ping:
        lines.append("ping = [" + ", ".join(f'"{a}"' for a in ping) + "]")
    nodes = [m for m in plan.machines if m.is_node]
    if media in ("bcast", "two"):
        lines += ["", "[[membership.media]]", 'type = "bcast"', 'interface = "eth0"']
    if media == "mcast":
        lines += ["", "[[membership.media]]", 'type = "mcast"', 'interface = "eth0"',
                  f'group = "{MCAST_GROUP}"', "ttl = 1"]
    if media in ("ucast", "two"):
        link, nic = ("public", "eth0") if media == "ucast" else ("private", "eth1")
        for m in nodes:
            lines += ["", "[[membership.media]]", 'type = "ucast"', f'interface = "{nic}"',
                      f'peer = "{m.addresses[link]}"']
    return "\n".join(lines) + "\n"


def group_toml(plan: Plan, name: str = "web", preferred: str = "node1", disk: bool = True,
               monitor: str = "1s", restarts: int = 1, probe: bool = True,
               python: str = sys.executable, fence: bool = False, clone: bool = False,
               vmac: bool = False, failure_timeout: str | None = None,
               priority_delay: str | None = None) -> str:
    """A resource group (pure): disk r0 promoted, ext4 mounted on /srv/data, the demo site
    (a service kembar supervises), the VIP (last: clients are sent here only once the site
    listens), and a probe of the site through the VIP; with ``fence``, the lab's power
    switch as the fencing device (``priority_delay``: its priority fencing delay); with
    ``clone`` (no disk), the site runs on every node and only the VIP moves; with ``vmac``,
    the VIP carries a virtual MAC."""
    if clone and disk:
        raise ValueError("a cloned site needs the site's data on every node (disk=False)")
    res: list[list[str]] = []
    if disk:
        res.append(['type = "disk"', f'disk = "{DISK}"'])
        res.append(['type = "filesystem"', f'device = "/dev/kembar/{DISK}"',
                    f'directory = "{MOUNT}"', 'fstype = "ext4"'])
    res.append(['type = "service"', 'name = "site"',
                f'command = ["{python}", "-m", "kembar.lab.site", "serve", "--data", '
                f'"{MOUNT if disk else LOCAL_SITE}", "--bind", '
                f'"0.0.0.0:{SITE_PORT}", "--graceful-timeout", "0"]', f"listen = {SITE_PORT}",
                'stop_signal = "SIGQUIT"', f'monitor_interval = "{monitor}"',
                f"restarts = {restarts}", 'timeout = "30s"', *(["clone = true"] if clone else [])])
    res.append(['type = "ip"', f'address = "{plan.vip}/{PREFIXLEN}"', 'interface = "eth0"',
                f'monitor_interval = "{monitor}"', *(['vmac = "auto"'] if vmac else [])])
    if probe:
        res.append(['type = "probe"', f'url = "http://{plan.vip}:{SITE_PORT}/health"',
                    f'monitor_interval = "{monitor}"', f"restarts = {restarts}",
                    'timeout = "10s"'])
    lines = [f"[groups.{name}]", f'preferred = "{preferred}"']
    if failure_timeout:
        lines.append(f'failure_timeout = "{failure_timeout}"')
    for r in res:
        lines += ["", f"[[groups.{name}.resources]]", *r]
    if fence:
        lines += ["", "[fencing]", f'command = ["{python}", "-m", "kembar.lab.power", "off", '
                                   '"{node}"]', 'timeout = "20s"',
                  *([f'priority_delay = "{priority_delay}"'] if priority_delay else [])]
    return "\n".join(lines) + "\n"


def cluster_toml(plan: Plan, protocol: str = "C", options: dict[str, str] | None = None,
                 disk: bool = True, membership: str = "", groups: str = "",
                 auto_failback: bool = True) -> str:
    """The one cluster file every node shares (pure)."""
    lines = ["[cluster]", f'name = "{plan.lab}"',
             f"auto_failback = {'true' if auto_failback else 'false'}", ""]
    for m in plan.machines:
        if m.is_node:
            lines += [f"[nodes.{m.name}]", f'address = "{m.addresses["public"]}"', ""]
    if disk:
        lines += [f"[disks.{DISK}]", f'protocol = "{protocol}"',
                  f'secret_file = "/etc/kembar/{DISK}.secret"']
        lines += [f'{k} = "{v}"' for k, v in (options or {}).items()]
        lines.append("")
        for m in plan.machines:
            if m.is_node:
                lines += [f"[disks.{DISK}.on.{m.name}]", f'backing = "{DISK_IN_NODE}"']
                if "private" in m.addresses:
                    lines.append(f'address = "{m.addresses["private"]}"')
                lines.append("")
    return "\n".join(lines) + ("\n" + membership if membership else "") + \
        ("\n" + groups if groups else "")


WEB_PORT = 9694
WEB_PASSWORD_FILE = "/etc/kembar/web.password"


def web_toml(plan: Plan, nodes: tuple[str, ...] = ("node1",), port: int = WEB_PORT,
             password: bool = True) -> str:
    """A ``[web]`` table (pure): the dashboard on each of ``nodes``' public address (with
    ``password``, guarded by the password file that ``install(web_password=...)`` writes;
    without, on loopback only)."""
    if password:
        listen = [f"{plan.machine(n).addresses['public']}:{port}" for n in nodes]
    else:
        listen = [f"127.0.0.1:{port}"]
    lines = ["[web]", "listen = [" + ", ".join(f'"{a}"' for a in listen) + "]"]
    if password:
        lines.append(f'password_file = "{WEB_PASSWORD_FILE}"')
    return "\n".join(lines) + "\n"


def sh(lab: Lab, node: str, script: str, input: str | None = None,
       timeout: float = 120) -> str:
    """Run a shell script on ``node``; KembarError with its output when it fails."""
    res = lab.run(node, ["sh", "-ec", script], input=input, timeout=timeout)
    if res.returncode != 0:
        raise KembarError(f"{node}: {script.splitlines()[0]}…: exit {res.returncode}: "
                          f"{(res.stdout + res.stderr).strip()[-500:]}")
    return res.stdout


def install(lab: Lab, protocol: str = "C", options: dict[str, str] | None = None,
            disk: bool = True, membership: str = "", groups: str = "",
            auto_failback: bool = True, web: str = "", web_password: str = "") -> None:
    """Cluster file (with ``membership``, a ``[membership]`` table, and its authkeys;
    ``groups``, resource groups and fencing; ``web``, a ``[web]`` table, and its password
    file when ``web_password`` is given), secrets on every node (the power switch's too);
    with ``disk``, metadata created and the disk up everywhere."""
    plan = lab.plan
    text = cluster_toml(plan, protocol, options, disk, membership, groups, auto_failback)
    if web:
        text += "\n" + web
    power_secret = lab.power_secret.read_text()
    secret = secrets.token_hex(16)
    authkeys = f"auth 1\n1 sha256 {secrets.token_hex(24)}\n"
    for node in plan.node_names:
        sh(lab, node, "umask 077; cat > /etc/kembar/cluster.toml", input=text)
        if web_password:
            sh(lab, node, f"umask 077; cat > {WEB_PASSWORD_FILE}", input=web_password + "\n")
        if membership:
            sh(lab, node, "umask 077; cat > /etc/kembar/authkeys", input=authkeys)
        sh(lab, node, f"umask 077; cat > {POWER_SECRET}", input=power_secret)
        if disk:
            sh(lab, node, f"umask 077; cat > /etc/kembar/{DISK}.secret", input=secret)
            sh(lab, node, f"kembar disk create-md {DISK} && kembar disk up {DISK}")


def start_daemon(lab: Lab, node: str) -> None:
    """``kembar daemon`` on ``node``, in the background, its log in /run/kembar."""
    sh(lab, node, "setsid kembar daemon >>/run/kembar/daemon.log 2>&1 </dev/null &")
    wait(lambda: lab.run(node, ["kembar", "status", "--json"]).returncode == 0, 20,
         f"the cluster daemon on {node}")


def daemon_status(lab: Lab, node: str) -> dict[str, Any]:
    return dict(json.loads(sh(lab, node, "kembar status --json")))


def disk_status(lab: Lab, node: str) -> dict[str, Any]:
    return dict(json.loads(sh(lab, node, f"kembar disk status --json {DISK}")))


def synced(lab: Lab) -> bool:
    for node in lab.plan.node_names:
        st = disk_status(lab, node)
        if not (st["disk_state"] == "UpToDate" and st["peer"]["disk_state"] == "UpToDate"
                and st["peer"]["connection"] == "Connected" and st["out_of_sync"] == 0):
            return False
    return True


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except KembarError:
            pass
        time.sleep(0.2)
    raise KembarError(f"timed out after {timeout:.0f}s waiting for {what}")


def first_primary(lab: Lab, node: str = "node1", timeout: float = 300) -> None:
    """The first Primary (``--force``: both sides are Inconsistent) and the full sync."""
    sh(lab, node, f"kembar disk primary --force {DISK}")
    wait(lambda: synced(lab), timeout, "the initial sync")


def make_site(lab: Lab, node: str) -> None:
    """ext4 on the Primary's device, mounted at /srv/data, the demo site's files on it."""
    sh(lab, node, f"mkfs.ext4 -q -F -L kembar-site /dev/kembar/{DISK}")
    sh(lab, node, f"mkdir -p {MOUNT} && mount /dev/kembar/{DISK} {MOUNT} && "
                  f"python -m kembar.lab.site init --data {MOUNT}")


def announce(lab: Lab, node: str) -> None:
    """Gratuitous ARP for the VIP, both kinds, 5 rounds, in the background (as IPaddr2's
    send_arp), so the client's ARP cache follows the address to this node.  (The cluster
    daemon's ``ip`` agent, issue 6, sends them itself through a packet socket.)"""
    vip = lab.plan.vip
    sh(lab, node, f"setsid sh -c 'for i in 1 2 3 4 5; do arping -q -U -c 1 -w 1 -I eth0 "
                  f"{vip}; arping -q -A -c 1 -w 1 -I eth0 {vip}; done' "
                  ">/dev/null 2>&1 </dev/null &")


def start_services(lab: Lab, node: str, vip: bool = True) -> None:
    """The group's start, in order: (disk promoted and mounted by the caller) site, VIP."""
    sh(lab, node, f"setsid python -m kembar.lab.site serve --data {MOUNT} "
                  f"--bind 0.0.0.0:{SITE_PORT} --pid-file {SITE_PID} "
                  f">>/run/kembar/site.log 2>&1 </dev/null &")
    wait(lambda: lab.run(node, ["curl", "-sf", "-m", "2",
                                f"http://127.0.0.1:{SITE_PORT}/health"]).returncode == 0,
         30, f"the site on {node}")
    if vip:
        sh(lab, node, f"ip addr add {lab.plan.vip}/{PREFIXLEN} dev eth0")
        announce(lab, node)


def take_over(lab: Lab, node: str) -> None:
    """What the cluster manager will do on the survivor: promote, mount, VIP, site."""
    sh(lab, node, f"kembar disk primary {DISK}")
    sh(lab, node, f"mkdir -p {MOUNT} && mount /dev/kembar/{DISK} {MOUNT}")
    start_services(lab, node)


def stop_services(lab: Lab, node: str) -> None:
    """The group's orderly stop, in reverse: VIP, site, unmount, demote."""
    sh(lab, node, f"ip addr del {lab.plan.vip}/{PREFIXLEN} dev eth0 2>/dev/null || true; "
                  f"if [ -f {SITE_PID} ]; then kill $(cat {SITE_PID}); "
                  f"while [ -f {SITE_PID} ]; do sleep 0.1; done; fi; "
                  f"umount {MOUNT}; kembar disk secondary {DISK}")


def prepare_site(lab: Lab, node: str = "node1") -> None:
    """The first sync, ext4 and the site's files on the disk, then everything released
    again (unmounted, Secondary): from here on the cluster daemons' manager runs it."""
    first_primary(lab, node)
    make_site(lab, node)
    sh(lab, node, f"umount {MOUNT} && kembar disk secondary {DISK}")


def prepare_local_site(lab: Lab) -> None:
    """The site's data directory on every node's own disk (for a group without a disk:
    the site + VIP group)."""
    for node in lab.plan.node_names:
        sh(lab, node, f"mkdir -p {LOCAL_SITE}")


def groups_status(lab: Lab, node: str) -> dict[str, Any]:
    return dict(daemon_status(lab, node)["manager"]["groups"])


def runs_on(lab: Lab, group: str = "web") -> list[str]:
    """The nodes whose own daemon says the group is running there (the truth per node)."""
    out = []
    for n in lab.plan.node_names:
        try:
            if lab.powered(n) and groups_status(lab, n)[group]["here"] == "running":
                out.append(n)
        except KembarError:
            pass
    return out


LSB_APACHE2 = """#!/bin/sh
# kembar lab: a stand-in for Debian's /etc/init.d/apache2 (LSB): the demo site on port 80,
# its data on /srv/data.  (Issue 7's LAMP profile installs the real apache2.)
PID=/run/kembar/apache2.pid
running() { [ -f $PID ] && kill -0 "$(cat $PID)" 2>/dev/null; }
case "$1" in
  start)
    running && exit 0
    setsid %(python)s -m kembar.lab.site serve --data /srv/data --bind 0.0.0.0:80 \\
        --pid-file $PID >>/run/kembar/apache2.log 2>&1 </dev/null &
    for i in $(seq 100); do
      curl -sf -m 1 -o /dev/null http://127.0.0.1/health && exit 0
      sleep 0.1
    done
    exit 1 ;;
  stop)
    running || exit 0
    kill "$(cat $PID)"
    for i in $(seq 150); do [ -f $PID ] || exit 0; sleep 0.1; done
    exit 1 ;;
  status)
    if running; then echo "apache2 is running"; exit 0; fi
    echo "apache2 is not running"; exit 3 ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
"""

LSB_MYSQL = """#!/bin/sh
# kembar lab: a stand-in for /etc/init.d/mysql (LSB): a process holding /srv/data open.
# (Issue 7's LAMP profile installs the real MariaDB.)
PID=/run/kembar/mysql.pid
running() { [ -f $PID ] && kill -0 "$(cat $PID)" 2>/dev/null; }
case "$1" in
  start)
    running && exit 0
    cd /srv/data && setsid sleep infinity </dev/null >/dev/null 2>&1 &
    echo $! > $PID
    exit 0 ;;
  stop)
    running && kill "$(cat $PID)"
    rm -f $PID
    exit 0 ;;
  status)
    if running; then echo "mysql is running"; exit 0; fi
    echo "mysql is not running"; exit 3 ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
"""


def client_ignores_garp(lab: Lab) -> None:
    """The lab's client drops gratuitous ARP about the VIP (nftables, arp family, in the
    client's namespace only): as clients and routers that ignore them, its ARP cache
    keeps the VIP's old MAC until the entry goes stale and is probed again."""
    vip = lab.plan.vip
    rules = (f"table arp {GARP_TABLE} {{\n  chain input {{\n"
             "    type filter hook input priority 0; policy accept;\n"
             f"    arp saddr ip {vip} arp daddr ip {vip} drop\n  }}\n}}\n")
    res = lab.run("client", ["nft", "-f", "-"], input=rules)
    if res.returncode != 0:
        raise KembarError(f"nft on the client: {res.stderr.strip()}")


def install_lsb_stand_ins(lab: Lab) -> None:
    """/etc/init.d/apache2 and /etc/init.d/mysql on every node, as Heartbeat's haresources
    names them (LSB scripts), standing in for the real servers (issue 7 installs those)."""
    for node in lab.plan.node_names:
        for name, text in (("apache2", LSB_APACHE2), ("mysql", LSB_MYSQL)):
            sh(lab, node, f"mkdir -p /etc/init.d && cat > /etc/init.d/{name} && "
                          f"chmod 755 /etc/init.d/{name}",
               input=text % {"python": sys.executable} if "%(python)s" in text else text)
