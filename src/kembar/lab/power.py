"""The lab's network power switch: the fencing device of the lab's cluster.

Like a rack PDU or a server's IPMI, it sits on the public network (198.18.0.254, port
``PORT``, in the switch namespace) and powers machines off on request; a request carries
the lab's secret (``/etc/kembar/power.secret`` on the nodes, mode 0600).  It is reached
over the public link only, as a real PDU usually is: a node cut off from it cannot fence.

Server (started by ``kembar lab up`` in the switch namespace)::

    python -m kembar.lab.power serve --lab NAME --secret-file F

Client (the cluster file's fencing command on the nodes)::

    python -m kembar.lab.power off NODE [--secret-file /etc/kembar/power.secret]

One JSON line each way: ``{"op": "off"|"status", "node": N, "token": T}`` →
``{"ok": bool, "text": "..."}``.  Powering off a machine that is off already succeeds (it
is off: that is what fencing needs to know).
"""

from __future__ import annotations

import argparse
import hmac
import json
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from kembar.errors import KembarError, StateError
from kembar.lab.names import POWER_ADDRESS

ADDRESS = POWER_ADDRESS
PORT = 7799
SECRET_IN_NODE = "/etc/kembar/power.secret"
MAX_REQUEST = 4096


def answer(lab_name: str, secret: str, line: bytes, lock: threading.Lock) -> dict[str, Any]:
    from kembar.lab.lab import Lab

    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise ValueError("not an object")
        op, node, token = req.get("op"), req.get("node"), req.get("token")
        if op not in ("off", "status") or not isinstance(node, str) or \
                not isinstance(token, str):
            raise ValueError("needs op off|status, node and token")
    except ValueError as exc:
        return {"ok": False, "text": f"bad request: {exc}"}
    if not hmac.compare_digest(token.encode(), secret.encode()):
        return {"ok": False, "text": "wrong secret"}
    lab = Lab(lab_name)
    with lock:
        try:
            plan = lab.plan
            plan.node(node)
            if op == "status":
                on = lab.powered(node)
                return {"ok": True, "text": f"{node}: {'on' if on else 'off'}"}
            try:
                return {"ok": True, "text": lab.crash(node)}
            except StateError:
                return {"ok": True, "text": f"{node}: already off"}
        except KembarError as exc:
            return {"ok": False, "text": str(exc)}


def serve(lab_name: str, secret_file: str, address: str = ADDRESS, port: int = PORT) -> None:
    secret = Path(secret_file).read_text().strip()
    lock = threading.Lock()
    srv = socket.create_server((address, port), reuse_port=False)

    def client(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                line = conn.makefile("rb").readline(MAX_REQUEST)
                rep = answer(lab_name, secret, line, lock)
                conn.sendall(json.dumps(rep).encode() + b"\n")
            except OSError:
                pass

    print(f"power switch of lab {lab_name} on {address}:{port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def request(op: str, node: str, secret_file: str, address: str = ADDRESS, port: int = PORT,
            timeout: float = 20.0) -> str:
    try:
        token = Path(secret_file).read_text().strip()
    except OSError as exc:
        raise KembarError(f"cannot read the power switch's secret: {exc}") from None
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.sendall(json.dumps({"op": op, "node": node, "token": token}).encode() + b"\n")
            rep = json.loads(s.makefile("rb").readline(MAX_REQUEST) or b"{}")
    except (OSError, ValueError) as exc:
        raise KembarError(f"power switch {address}:{port}: {exc}") from None
    if not rep.get("ok"):
        raise KembarError(f"power switch refused: {rep.get('text', 'no answer')}")
    return str(rep["text"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kembar.lab.power",
                                 description="The lab's network power switch (fencing).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--lab", required=True)
    s.add_argument("--secret-file", required=True)
    for name in ("off", "status"):
        c = sub.add_parser(name)
        c.add_argument("node")
        c.add_argument("--secret-file", default=SECRET_IN_NODE)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "serve":
            serve(args.lab, args.secret_file)
            return 0
        print(request(args.cmd, args.node, args.secret_file))
        return 0
    except KembarError as exc:
        print(f"power: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
