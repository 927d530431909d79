"""The lab's LAMP profile (``kembar lab up --stack lamp``): the paper's stack, for real.

Debian's ``apache2`` with ``libapache2-mod-php`` and ``mariadb-server`` (installed on the
host if missing, their services not started there: a lab node's ``/usr`` is the host's, its
``/etc`` and ``/run`` its own).  Everything the site keeps lives on the replicated disk,
mounted at ``/srv/data``: the web root (``www/``, the shop's PHP variant), MariaDB's data
directory (``mysql/``), the database's start-up SQL and the shop's credentials.  The
cluster's group ``web`` on node1: disk r0, ext4 on /srv/data, MariaDB, Apache, the VIP
and a probe of ``/health`` through the VIP (a page that queries the database) — so MariaDB
starts before Apache and stops after it.

Both servers are commands kembar supervises (the lab has no systemd; Debian's init scripts
would start ``mysqld_safe`` and daemonise): ``mariadbd`` in the foreground with its options
on the command line (``--no-defaults``: the host's my.cnf names /var/lib/mysql), and
``apache2 -DFOREGROUND`` with Debian's envvars; their logs in ``/run/kembar`` of the node.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from importlib import resources
from typing import Callable

from kembar.errors import KembarError
from kembar.lab import cluster
from kembar.lab.lab import Lab
from kembar.lab.names import PREFIXLEN, Plan

PACKAGES = ("apache2", "libapache2-mod-php", "php-mysql", "mariadb-server", "mariadb-client")
KEEPALIVE, DEADTIME = "200ms", "1s"  # the demo's timings
WEB_ROOT = f"{cluster.MOUNT}/www"
DATADIR = f"{cluster.MOUNT}/mysql"
INIT_SQL = f"{cluster.MOUNT}/shop-init.sql"
SHOP_INI = f"{cluster.MOUNT}/shop.ini"
SOCKET_DIR = "/run/mysqld"
SOCKET = f"{SOCKET_DIR}/mysqld.sock"
MARIADB_LOG = "/run/kembar/mariadb.err"
APACHE_LOGS = "/run/kembar/apache2"
MARIADB_PORT = 3306

SITE_CONF = f"""# kembar lab: the shop (PHP variant) from the replicated disk
<VirtualHost *:{cluster.SITE_PORT}>
    DocumentRoot {WEB_ROOT}
    <Directory {WEB_ROOT}>
        Require all granted
        AllowOverride None
        DirectoryIndex index.php
        FallbackResource /index.php
    </Directory>
    ErrorLog ${{APACHE_LOG_DIR}}/error.log
    CustomLog ${{APACHE_LOG_DIR}}/access.log combined
</VirtualHost>
"""


def missing_packages() -> list[str]:
    return [p for p in PACKAGES
            if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]


def ensure_packages(say: Callable[[str], None] = lambda _: None) -> None:
    """apt-get install what is missing, without starting the services on this machine (a
    policy-rc.d that refuses, for the install only, unless there is one already)."""
    missing = missing_packages()
    if not missing:
        return
    say(f"installing Debian packages (services not started): {' '.join(missing)}")
    guard = "/usr/sbin/policy-rc.d"
    made = not os.path.exists(guard)
    if made:
        with open(guard, "w") as fh:
            fh.write("#!/bin/sh\nexit 101\n")
        os.chmod(guard, 0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise KembarError(f"{' '.join(cmd)}: exit {res.returncode}: "
                                  f"{(res.stdout + res.stderr).strip()[-400:]}")
    finally:
        if made:
            os.unlink(guard)


def mariadb_command() -> list[str]:
    """MariaDB in the foreground, its data on the replicated disk, listening on the node's
    own loopback (for the cluster's readiness check) and on a socket for PHP."""
    return ["sh", "-c", f"mkdir -p {SOCKET_DIR} && exec mariadbd --no-defaults --user=root "
            f"--datadir={DATADIR} --socket={SOCKET} --pid-file={SOCKET_DIR}/mariadbd.pid "
            f"--bind-address=127.0.0.1 --port={MARIADB_PORT} --skip-name-resolve "
            f"--log-error={MARIADB_LOG} --init-file={INIT_SQL} "
            "--innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=1"]


def apache_command() -> list[str]:
    """Debian's Apache (mpm_prefork + mod_php) in the foreground, logs in /run/kembar."""
    return ["sh", "-c", f"mkdir -p /run/lock && . /etc/apache2/envvars && "
            f"export APACHE_LOG_DIR={APACHE_LOGS} && "
            "mkdir -p \"$APACHE_RUN_DIR\" \"$APACHE_LOCK_DIR\" \"$APACHE_LOG_DIR\" && "
            "exec apache2 -DFOREGROUND"]


def _toml_list(argv: list[str]) -> str:
    return "[" + ", ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
                           for a in argv) + "]"


def group_toml(plan: Plan, name: str = "web", preferred: str = "node1",
               monitor: str = "2s") -> str:
    """The LAMP group (pure): disk, filesystem, MariaDB, Apache, VIP, probe."""
    res = [
        ['type = "disk"', f'disk = "{cluster.DISK}"'],
        ['type = "filesystem"', f'device = "/dev/kembar/{cluster.DISK}"',
         f'directory = "{cluster.MOUNT}"', 'fstype = "ext4"'],
        ['type = "service"', 'name = "mariadb"', f"command = {_toml_list(mariadb_command())}",
         f"listen = {MARIADB_PORT}", 'stop_signal = "SIGTERM"',
         f'monitor_interval = "{monitor}"', 'timeout = "60s"'],
        ['type = "service"', 'name = "apache2"', f"command = {_toml_list(apache_command())}",
         f"listen = {cluster.SITE_PORT}", 'stop_signal = "SIGTERM"',
         f'monitor_interval = "{monitor}"', 'timeout = "30s"'],
        ['type = "ip"', f'address = "{plan.vip}/{PREFIXLEN}"', 'interface = "eth0"',
         f'monitor_interval = "{monitor}"'],
        ['type = "probe"', f'url = "http://{plan.vip}:{cluster.SITE_PORT}/health"',
         f'monitor_interval = "{monitor}"', 'timeout = "10s"'],
    ]
    lines = [f"[groups.{name}]", f'preferred = "{preferred}"']
    for r in res:
        lines += ["", f"[[groups.{name}.resources]]", *r]
    return "\n".join(lines) + "\n"


def init_sql(password: str) -> str:
    """What MariaDB runs at each start (``--init-file``), idempotent (pure)."""
    return "\n".join([
        "CREATE DATABASE IF NOT EXISTS shop;",
        "CREATE TABLE IF NOT EXISTS shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, "
        "product_id INT NOT NULL, quantity INT NOT NULL, customer VARCHAR(100) NOT NULL, "
        "created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), "
        "node VARCHAR(64) NOT NULL) ENGINE=InnoDB;",
        f"CREATE USER IF NOT EXISTS 'shop'@'localhost' IDENTIFIED BY '{password}';",
        "GRANT SELECT, INSERT ON shop.* TO 'shop'@'localhost';", ""])


def php_site() -> str:
    return resources.files("kembar.lab.site").joinpath("php/index.php").read_text()


def configure_node(lab: Lab, node: str) -> None:
    """Apache's site in the node's own /etc: the web root on /srv/data, not Debian's
    default site."""
    cluster.sh(lab, node, "cat > /etc/apache2/sites-available/kembar-shop.conf && "
                          "ln -sf ../sites-available/kembar-shop.conf "
                          "/etc/apache2/sites-enabled/kembar-shop.conf && "
                          "rm -f /etc/apache2/sites-enabled/000-default.conf && "
                          f"echo 'ServerName {node}' > "
                          "/etc/apache2/conf-enabled/kembar-servername.conf", input=SITE_CONF)


def prepare_data(lab: Lab, node: str = "node1") -> None:
    """The first sync, ext4, the web root, MariaDB's data directory and the shop's
    credentials on the disk; then released again (unmounted, Secondary)."""
    cluster.first_primary(lab, node)
    password = secrets.token_hex(12)
    cluster.sh(lab, node, f"mkfs.ext4 -q -F -L kembar-lamp /dev/kembar/{cluster.DISK} && "
                          f"mkdir -p {cluster.MOUNT} && "
                          f"mount /dev/kembar/{cluster.DISK} {cluster.MOUNT} && "
                          f"mkdir -p {WEB_ROOT} && cat > {WEB_ROOT}/index.php",
               input=php_site())
    cluster.sh(lab, node, f"umask 077; cat > {INIT_SQL}", input=init_sql(password))
    cluster.sh(lab, node, f"umask 027; cat > {SHOP_INI} && chgrp www-data {SHOP_INI}",
               input=f"user = shop\npassword = {password}\ndatabase = shop\n"
                     f"socket = {SOCKET}\n")
    cluster.sh(lab, node, f"mariadb-install-db --no-defaults --user=root --datadir={DATADIR} "
                          "--auth-root-authentication-method=socket --skip-test-db "
                          ">/run/kembar/mariadb-install.log 2>&1", timeout=300)
    cluster.sh(lab, node, f"umount {cluster.MOUNT} && kembar disk secondary {cluster.DISK}")


def install(lab: Lab, say: Callable[[str], None] = lambda _: None) -> None:
    """The LAMP stack on a lab that is up: packages, the cluster file with the group, the
    data on the disk, the daemons; returns once node1 serves through the VIP."""
    from kembar.lab.experiments.failover import serving
    if len(lab.plan.node_names) != 2:
        raise KembarError("--stack lamp: a lab of two nodes (the paper's cluster)")
    ensure_packages(say)
    say("the cluster file: disk r0, MariaDB then Apache in group web, preferring node1")
    mt = cluster.membership_toml(lab.plan, "bcast", keepalive=KEEPALIVE, deadtime=DEADTIME,
                                 initdead="3s")
    cluster.install(lab, membership=mt, groups=group_toml(lab.plan))
    for n in lab.plan.node_names:
        configure_node(lab, n)
    say("first sync; ext4, the web root and MariaDB's data directory on /srv/data")
    prepare_data(lab)
    for n in lab.plan.node_names:
        cluster.start_daemon(lab, n)
    say("the cluster daemons are up; waiting for node1 to serve through the VIP")
    serving(lab, "node1", 180)


def mariadb_check(lab: Lab, node: str) -> str:
    """``mariadb-check`` of the shop's tables on ``node`` (as root, by the socket)."""
    return cluster.sh(lab, node, f"mariadb-check --socket={SOCKET} -u root shop")


def mariadb_log(lab: Lab, node: str) -> str:
    try:
        return (lab.machine_dir(node) / "run" / os.path.basename(MARIADB_LOG)).read_text(
            errors="replace")
    except OSError:
        return ""

