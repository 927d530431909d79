"""The lab: the paper's cluster on one machine, built from namespaces, with faults on demand.

``Lab(name).up()`` builds a switch, one machine per node (its own network, mount, PID and
UTS namespaces, a second disk, its own ``/etc``, ``/run``, ``/var/lib``) and a client;
``down()`` removes all of it, also when an earlier ``up`` or the lab tool was killed
half-way: it finds what is there by name (namespaces ``kb-<lab>-*``, the directory
``<base>/kembar-lab-<lab>``, processes inside those namespaces), not only from its state
file.  Every process it ends it started itself, and it ends them by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from kembar.disk import loopdev
from kembar.disk.device import loop_record, recorded_loops
from kembar.errors import ConfigError, KembarError, StateError
from kembar.lab import machine, net
from kembar.lab.hw import hw_request
from kembar.lab.machine import Proc
from kembar.lab.names import DIR_PREFIX, LINKS, NS_PREFIX, Cut, Plan, check_name, cut, lab_of_ns

DEFAULT_BASE = Path(os.environ.get("KEMBAR_LAB_BASE", "/tmp"))
DEFAULT_DISK_SIZE = 256 * 1024 * 1024
DEV_DIR = "/dev/kembar"


def lab_dir(name: str, base: Path = DEFAULT_BASE) -> Path:
    return base / f"{DIR_PREFIX}{name}"


def _proc(data: Any) -> Proc | None:
    if isinstance(data, list) and len(data) == 2:
        return Proc(int(data[0]), int(data[1]))
    return None


class Lab:
    def __init__(self, name: str = "lab", base: Path = DEFAULT_BASE) -> None:
        self.name = check_name(name)
        self.base = base
        self.dir = lab_dir(name, base)
        self.state_file = self.dir / "state.json"

    # ------------------------------------------------------------------ state

    def exists(self) -> bool:
        return self.dir.exists() or bool(net.existing(f"{NS_PREFIX}{self.name}-"))

    def state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise StateError(f"lab {self.name} does not exist (`kembar lab up "
                             f"--name {self.name}` makes it)") from None
        except ValueError as exc:
            raise StateError(f"{self.state_file}: damaged ({exc}); `kembar lab down "
                             f"--name {self.name}` removes the lab") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.state_file}: damaged; `kembar lab down` removes the lab")
        return data

    def _save(self, st: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".new")
        tmp.write_text(json.dumps(st, indent=1))
        os.replace(tmp, self.state_file)

    @property
    def plan(self) -> Plan:
        return Plan.from_json(self.state()["plan"])

    def machine_dir(self, m: str) -> Path:
        return self.dir / "machines" / m

    def image(self, node: str) -> Path:
        return self.dir / "images" / f"{node}.img"

    @property
    def hw_mount(self) -> Path:
        return self.dir / "hw"

    @property
    def hw_sock(self) -> Path:
        return self.dir / "hw.sock"

    def init(self, m: str) -> Proc:
        """The running PID 1 of machine ``m``; StateError if it is powered off."""
        self.plan.machine(m)
        p = _proc(self.state()["machines"].get(m, {}).get("init"))
        if p is None or not p.alive():
            raise StateError(f"lab {self.name}: {m} is powered off (`kembar lab boot {m}`)")
        return p

    # ------------------------------------------------------------- up / down

    def up(self, nodes: int = 2, private: bool = False,
           disk_size: int = DEFAULT_DISK_SIZE) -> Plan:
        plan = Plan(self.name, nodes, private)
        if self.exists():
            raise StateError(f"lab {self.name} exists already (`kembar lab down --name "
                             f"{self.name}` removes it)")
        self.dir.mkdir(parents=True)
        st: dict[str, Any] = {"plan": plan.to_json(), "machines": {}, "hw": None,
                              "cuts": [], "disk_size": disk_size, "created": time.time(),
                              "owner": os.getpid()}
        self._save(st)
        try:
            (self.dir / "images").mkdir()
            self.hw_mount.mkdir()
            for n in plan.node_names:
                with open(self.image(n), "wb") as fh:
                    fh.truncate(disk_size)
            st["hw"] = self._start_hw(plan)
            self._save(st)
            net.wire(plan)
            st["power"] = self._start_power_switch(plan)
            self._save(st)
            for m in plan.machines:
                self._power_on(m.name, st)
                self._save(st)
        except BaseException:
            self.down()
            raise
        return plan

    def _start_hw(self, plan: Plan) -> list[int]:
        pid_file = self.dir / "hw.pid"
        cmd = [sys.executable, "-m", "kembar.lab.hw", "--mount", str(self.hw_mount),
               "--control", str(self.hw_sock), "--pid-file", str(pid_file)]
        for n in plan.node_names:
            cmd += ["--disk", f"{n}={self.image(n)}"]
        return self._spawn(cmd, "hw.log", "disk layer", pid_file.exists)

    def _spawn(self, cmd: list[str], log_name: str, what: str,
               ready: Callable[[], bool]) -> list[int]:
        """Start one of the lab's own host-side services, its output in ``log_name``;
        wait until ``ready()``; its [pid, start time] for the state file."""
        log_path = self.dir / log_name
        with open(log_path, "ab") as log:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        deadline = time.monotonic() + 20
        while not ready():
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                tail = log_path.read_text(errors="replace").strip()
                raise KembarError(f"the lab's {what} did not start: {tail[-300:]}")
            time.sleep(0.02)
        me = machine.proc(p.pid)
        assert me is not None
        return [me.pid, me.start]

    @property
    def power_secret(self) -> Path:
        return self.dir / "power.secret"

    def _start_power_switch(self, plan: Plan) -> list[int]:
        """The network power switch (fencing device) on the public link, in the switch
        namespace: ``kembar.lab.power``."""
        fd = os.open(self.power_secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(16) + "\n")
        cmd = ["nsenter", f"--net=/run/netns/{plan.switch_ns}", "--", sys.executable, "-m",
               "kembar.lab.power", "serve", "--lab", self.name,
               "--secret-file", str(self.power_secret)]
        log = self.dir / "power.log"
        return self._spawn(cmd, "power.log", "power switch",
                           lambda: "power switch of lab" in log.read_text(errors="replace"))

    def powered(self, m: str) -> bool:
        return self._machine_state(m)[2] is not None

    def _power_on(self, m: str, st: dict[str, Any]) -> None:
        plan = Plan.from_json(st["plan"])
        hw = str(self.hw_mount / m) if plan.machine(m).is_node else None
        outer, init = machine.power_on(m, plan.ns(m), self.machine_dir(m), hw,
                                       str(self.hw_mount))
        st["machines"][m] = {"unshare": [outer.pid, outer.start],
                             "init": [init.pid, init.start], "boots":
                             st["machines"].get(m, {}).get("boots", 0) + 1}

    def down(self) -> list[str]:
        """Remove everything of this lab; returns what was done (safe to repeat)."""
        done: list[str] = []
        prefix = f"{NS_PREFIX}{self.name}-"
        namespaces = net.existing(prefix)
        try:
            st = self.state()
        except StateError:
            st = {}
        # 1. power off every machine: their PID 1 first (takes all of the machine with it)
        for m, info in (st.get("machines") or {}).items():
            init = _proc(info.get("init"))
            if init is not None and machine.power_off(init):
                done.append(f"powered off {m} (pid {init.pid})")
        # 2. anything else still inside the lab's network namespaces (processes started
        #    there by `lab exec` or an interrupted `up`)
        done += self._kill_in_netns(namespaces)
        # 3. the machines' loop devices (a power cut leaves them bound to a dead FUSE file)
        done += self._release_loops()
        # 4. the disk layer
        done += self._stop_hw(_proc(st.get("hw")))
        # 5. the wiring
        done += net.unwire(namespaces)
        # 6. the files
        if self.dir.exists():
            left = [m.mountpoint for m in loopdev.mounts()
                    if m.mountpoint.startswith(f"{self.dir}/")]
            for mp in sorted(left, key=lambda p: p.count("/"), reverse=True):
                subprocess.run(["umount", "-l", mp], capture_output=True)
                done.append(f"unmounted {mp}")
            shutil.rmtree(self.dir, ignore_errors=True)
            done.append(f"removed {self.dir}")
        done += _remove_dev_dir_if_unused(self.base)
        return done

    def _release_loops(self) -> list[str]:
        """Detach every loop device a machine of this lab recorded, or that is bound to a
        file in the lab's directory (the disks seen from the host)."""
        done = []
        recorded = {dev for run in self.dir.glob("machines/*/run")
                    for dev in recorded_loops(str(run)).values()}
        for name in loopdev.loop_devices():
            dev = f"/dev/{name}"
            back = loopdev.backing_file(name) or ""
            if dev in recorded or back.startswith(f"{self.dir}/"):
                res = subprocess.run([loopdev.LOSETUP, "-d", dev], capture_output=True)
                if res.returncode == 0:
                    done.append(f"detached {dev}")
        return done

    def _stop_hw(self, hw: Proc | None) -> list[str]:
        done = []
        if hw is None:
            hw = self._find_hw()
        if hw is not None and hw.alive():
            os.kill(hw.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while hw.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if hw.alive():
                os.kill(hw.pid, signal.SIGKILL)
            done.append(f"stopped the disk layer (pid {hw.pid})")
        return done

    def _find_hw(self) -> Proc | None:
        """The disk layer of this lab when the state file does not say (an interrupted
        ``up``): the process whose command line mounts this lab's ``hw`` directory."""
        want = str(self.hw_mount).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if b"kembar.lab.hw" in argv and want in argv:
                return machine.proc(int(entry))
        return None

    # ------------------------------------------------------------------ faults

    def _machine_state(self, m: str) -> tuple[Plan, dict[str, Any], Proc | None]:
        """The plan, the state and machine ``m``'s PID 1 if it runs (None: powered off)."""
        plan = self.plan
        plan.machine(m)
        st = self.state()
        init = _proc(st["machines"].get(m, {}).get("init"))
        return plan, st, init if init is not None and init.alive() else None

    def crash(self, m: str) -> str:
        """Power cut: every process of the machine dies at once, its cables go dead."""
        plan, st, init = self._machine_state(m)
        if init is None:
            raise StateError(f"lab {self.name}: {m} is already powered off")
        t0 = time.monotonic()
        # The cables go dead first: a machine that loses power sends nothing more (no
        # FIN or RST from its dying processes' sockets reaches anyone).
        net.cut_ports(plan, m)
        machine.power_off(init)
        self._kill_in_netns([plan.ns(m)])
        net.unplug(plan, m)
        released = self._release_machine_loops(m)
        took = time.monotonic() - t0
        return f"{m}: powered off in {took * 1000:.0f} ms" + (
            f" ({'; '.join(released)})" if released else "")

    def _kill_in_netns(self, namespaces: list[str]) -> list[str]:
        """SIGKILL every process still inside these network namespaces (ours: started
        there by the lab, `lab exec` or an interrupted `up`); wait until they are gone."""
        done: list[str] = []
        inodes = {i for i in (machine.netns_inode(ns) for ns in namespaces) if i}
        if not inodes:
            return done
        mine = os.getpid()
        for pid in machine.pids_in_netns(inodes):
            if pid != mine:
                try:
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed pid {pid} (in the lab's namespaces)")
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while [p for p in machine.pids_in_netns(inodes) if p != mine] and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        return done

    def _release_machine_loops(self, m: str) -> list[str]:
        """A machine's kernel objects (its loop devices) do not outlive its power cut."""
        done = []
        run = self.machine_dir(m) / "run"
        for disk, dev in recorded_loops(str(run)).items():
            subprocess.run([loopdev.LOSETUP, "-d", dev], capture_output=True)
            done.append(f"its {dev} detached")
            Path(loop_record(str(run), disk)).unlink(missing_ok=True)
        return done

    def boot(self, m: str) -> str:
        """Power on: cables in, PID 1 started, kembar's boot services run."""
        plan, st, init = self._machine_state(m)
        if init is not None:
            raise StateError(f"lab {self.name}: {m} is running already")
        if machine.netns_inode(plan.ns(m)) is None:
            net.plug(plan, m)
        self._power_on(m, st)
        self._save(st)
        out = ""
        if plan.machine(m).is_node:
            res = self.run(m, [sys.executable, "-m", "kembar.lab.rc"])
            out = " (boot services failed: see /run/kembar/boot.log)" if res.returncode else ""
        return f"{m}: booted{out}"

    def partition(self, a: str, b: str, link: str = "all") -> str:
        plan = self.plan
        plan.machine(a)
        plan.machine(b)
        both = [ln for ln in plan.links
                if ln in plan.machine(a).addresses and ln in plan.machine(b).addresses]
        links = both if link == "all" else [link]
        for ln in links:
            if ln not in LINKS:
                raise ConfigError(f"--link {link}: use public, private or all")
            if ln not in plan.links:
                raise ConfigError(f"lab {self.name} has no private link (`lab up --private`)")
            for x in (a, b):
                if ln not in plan.machine(x).addresses:
                    raise ConfigError(f"{x} is not on the {ln} link")
        st = self.state()
        cuts: list[Cut] = [cut(*c) for c in st["cuts"]]
        new = [cut(a, b, ln) for ln in links]
        cuts = sorted(set(cuts) | set(new))
        net.apply_cuts(plan, cuts)
        st["cuts"] = [list(c) for c in cuts]
        self._save(st)
        return f"{a} and {b} cannot reach each other on the {', '.join(links)} link"

    def heal(self) -> str:
        plan = self.plan
        st = self.state()
        net.apply_cuts(plan, [])
        n = len(st["cuts"])
        st["cuts"] = []
        self._save(st)
        return f"healed {n} cut link(s)" if n else "nothing was cut"

    def disk_fail(self, node: str, fail: bool = True) -> str:
        self.plan.node(node)
        hw_request(str(self.hw_sock), {"op": "fail" if fail else "repair", "disk": node})
        return (f"{node}: its disk now fails every read and write (EIO)" if fail
                else f"{node}: its disk works again")

    # --------------------------------------------------------------- commands

    def run(self, m: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on machine ``m``, output captured (for programs and tests)."""
        return machine.run(self.init(m), argv, **kw)

    def exec_argv(self, m: str, argv: list[str]) -> list[str]:
        return machine.enter_argv(self.init(m), argv)

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        st = self.state()
        plan = Plan.from_json(st["plan"])
        try:
            wires = net.cables(plan)
        except Exception:  # noqa: BLE001 - the switch is gone: say so, do not fail
            wires = {}
        try:
            disks = hw_request(str(self.hw_sock), {"op": "status"}).get("disks", {})
        except KembarError:
            disks = {}
        machines = []
        for m in plan.machines:
            info = st["machines"].get(m.name, {})
            init = _proc(info.get("init"))
            on = init is not None and init.alive()
            machines.append({
                "name": m.name, "role": "node" if m.is_node else "client",
                "power": "on" if on else "off", "pid": init.pid if on and init else None,
                "boots": info.get("boots", 0), "namespace": plan.ns(m.name),
                "addresses": m.addresses, "cables": wires.get(m.name, {}),
                "disk": disks.get(m.name) if m.is_node else None})
        return {"lab": self.name, "dir": str(self.dir), "nodes": plan.nodes,
                "private": plan.private, "vip": plan.vip, "machines": machines,
                "cuts": st["cuts"], "switch": plan.switch_ns}


def _remove_dev_dir_if_unused(base: Path) -> list[str]:
    """The machines bind their own directory over ``/dev/kembar``, which must exist on the
    host's /dev (devtmpfs, shared) for that; remove it again when it is empty and no lab
    is left (a lab still running has it as a mount point in its machines)."""
    if all_labs(base):
        return []
    try:
        os.rmdir(DEV_DIR)
    except OSError:
        return []
    return [f"removed the empty {DEV_DIR}"]


def fresh_lab(name: str, **up: Any) -> Lab:
    """Lab ``name`` built anew (an earlier one of that name removed first), powered on."""
    lab = Lab(name)
    if lab.exists():
        lab.down()
    lab.up(**up)
    return lab


def all_labs(base: Path = DEFAULT_BASE) -> list[str]:
    """Every lab that has anything left: a directory or a namespace."""
    names = {p.name[len(DIR_PREFIX):] for p in base.glob(f"{DIR_PREFIX}*")}
    names |= {lab for lab in (lab_of_ns(ns) for ns in net.existing(NS_PREFIX)) if lab}
    out = []
    for n in sorted(names):
        try:
            out.append(check_name(n))
        except ConfigError:
            continue
    return out
