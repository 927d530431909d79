"""Command line of the demo site.

    python -m kembar.lab.site init  --data DIR
    python -m kembar.lab.site serve --data DIR --bind HOST:PORT [--workers N] [--pid-file F]
                                    [--graceful-timeout S]

``serve`` initialises DIR (see :func:`kembar.lab.site.app.init_site`) and runs the
shop under gunicorn with sync workers. Bad arguments, a missing or read-only DIR,
or unusable shop data give one ``kembar-site: error: ...`` line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
import tempfile
from typing import Any, NoReturn

from gunicorn.app.base import BaseApplication

from kembar.lab.site.app import CatalogueError, init_site, make_app

PROG = "kembar-site"
_BIND = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_bind(bind: str) -> str:
    match = _BIND.fullmatch(bind)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise UsageError(f"--bind must be HOST:PORT with a port from 1 to 65535, not {bind!r}")
    return bind


def check_data_dir(path: str) -> str:
    if not os.path.exists(path):
        raise UsageError(f"data directory {path!r} does not exist")
    if not os.path.isdir(path):
        raise UsageError(f"data directory {path!r} is not a directory")
    try:  # a real write catches read-only mounts, which os.access misses for root
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kembar-site-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"data directory {path!r} is not writable: {e.strerror or e}") from None
    return os.path.abspath(path)


class _Gunicorn(BaseApplication):
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__(prog=PROG)

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
            # its default path is per user, so the nodes of a lab would share it
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        return self._app


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The lab's demo shop.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    init = sub.add_parser("init", help="create catalogue.json and shop.db in DIR if missing")
    init.add_argument("--data", required=True, metavar="DIR", help="existing writable data directory")
    serve = sub.add_parser("serve", help="initialise DIR and serve the shop under gunicorn")
    serve.add_argument("--data", required=True, metavar="DIR", help="existing writable data directory")
    serve.add_argument("--bind", required=True, metavar="HOST:PORT", help="address to listen on")
    serve.add_argument("--workers", type=int, default=2, metavar="N", help="sync workers (default 2)")
    serve.add_argument("--pid-file", metavar="F", help="gunicorn writes its master PID here")
    serve.add_argument("--graceful-timeout", type=int, default=5, metavar="S",
                       help="seconds the workers get to finish their requests when stopped "
                            "(default 5; 0 ends them at once — a cluster that removes the VIP "
                            "first has no client left to wait for, and SQLite keeps a killed "
                            "worker's transaction all or nothing)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        data_dir = check_data_dir(args.data)
        if args.command == "serve":
            parse_bind(args.bind)
            if args.workers < 1:
                raise UsageError("--workers must be at least 1")
            if not 0 <= args.graceful_timeout <= 3600:
                raise UsageError("--graceful-timeout must be from 0 to 3600 seconds")
        init_site(data_dir)
    except UsageError as e:
        fail(str(e))
    except (CatalogueError, sqlite3.Error, OSError) as e:
        fail(f"cannot initialise the shop in {args.data!r}: {e}")
    if args.command == "init":
        return
    options: dict[str, Any] = {
        "bind": [args.bind],
        "workers": args.workers,
        "worker_class": "sync",
        "accesslog": "-",
        "graceful_timeout": args.graceful_timeout,
        "proc_name": f"{PROG} {data_dir}",
    }
    if args.pid_file:
        options["pidfile"] = os.path.abspath(args.pid_file)
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"
    _Gunicorn(make_app(data_dir), options).run()


if __name__ == "__main__":
    main()
