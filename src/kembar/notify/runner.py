"""Running notify hooks: worker threads and child processes, never the caller's time.

``submit`` only puts the commands on a bounded queue (a full queue drops and counts them:
a storm of events must not pile up processes); up to ``max_running`` worker threads take
them in order and run each as its own process session, stdin from /dev/null, stdout and
stderr into a temporary file (a hook that leaves a child behind cannot block a pipe), in
``/``.  A hook still running at its timeout gets SIGTERM, then SIGKILL ``KILL_GRACE``
seconds later, to its whole process group.  Every outcome is logged (logger
``kembar.notify``: the exit status and the end of the output) and counted.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from kembar.config.notify import NotifyConfig
from kembar.notify.events import Invocation, Notice, invocations

log = logging.getLogger("kembar.notify")

QUEUE_SIZE = 64
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a hook past its timeout
OUTPUT_TAIL = 600  # characters of a hook's output in the log
OUTCOMES = ("ok", "failed", "timed_out", "not_started", "dropped")


class HookRunner:
    """Runs :class:`Invocation` objects in worker threads; see the module's documentation."""

    def __init__(self, max_running: int = 4, queue_size: int = QUEUE_SIZE,
                 kill_grace: float = KILL_GRACE) -> None:
        self.max_running = max_running
        self.kill_grace = kill_grace
        self.counts: collections.Counter[str] = collections.Counter({o: 0 for o in OUTCOMES})
        self.by_event: dict[str, collections.Counter[str]] = {}
        self.last_failure = ""
        self._queue: queue.Queue[Invocation | None] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._running = 0
        self._closed = False

    # ------------------------------------------------------------------ callers

    def submit(self, todo: list[Invocation]) -> None:
        """Queue the commands; returns at once (never waits for a hook or the queue)."""
        for inv in todo:
            if self._closed:
                self._count(inv, "dropped", "the runner is closed")
                continue
            try:
                self._queue.put_nowait(inv)
            except queue.Full:
                self._count(inv, "dropped", f"{self._queue.maxsize} hooks already wait")
                log.error("notify %s: not run: %d hooks already wait their turn", inv.describe(),
                          self._queue.qsize())
                continue
            self._grow()

    def stats(self) -> dict[str, Any]:
        """Counts of outcomes (overall and by event), what runs and waits now."""
        with self._lock:
            return {**dict(self.counts), "running": self._running,
                    "queued": self._queue.qsize(),
                    "by_event": {e: dict(c) for e, c in self.by_event.items()},
                    "last_failure": self.last_failure}

    def close(self, wait: float = 5.0) -> None:
        """Run what is queued, for up to ``wait`` seconds in all, then return (hooks still
        running are left to their timeouts: the worker threads are daemon threads)."""
        self._closed = True
        for _ in self._workers:
            try:
                self._queue.put(None, timeout=max(0.0, wait))
            except queue.Full:
                break
        deadline = time.monotonic() + wait
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ workers

    def _grow(self) -> None:
        with self._lock:
            idle = len(self._workers) - self._running
            if idle >= self._queue.qsize() or len(self._workers) >= self.max_running:
                return
            worker = threading.Thread(target=self._work, name=f"kembar-notify-{len(self._workers)}",
                                      daemon=True)
            self._workers.append(worker)
        worker.start()

    def _work(self) -> None:
        while True:
            inv = self._queue.get()
            if inv is None:
                return
            with self._lock:
                self._running += 1
            try:
                self._run(inv)
            except Exception:  # noqa: BLE001 - a worker must survive anything
                log.exception("BUG: notify %s", inv.describe())
            finally:
                with self._lock:
                    self._running -= 1

    def _count(self, inv: Invocation, outcome: str, why: str = "") -> None:
        with self._lock:
            self.counts[outcome] += 1
            self.by_event.setdefault(inv.event, collections.Counter())[outcome] += 1
            if outcome != "ok":
                self.last_failure = f"{time.strftime('%Y-%m-%d %H:%M:%S')} " \
                                    f"{inv.describe()}: {why}"

    def _run(self, inv: Invocation) -> None:
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(list(inv.argv), env=dict(inv.env), cwd="/",
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        close_fds=True)
            except OSError as exc:
                why = f"cannot run it: {exc.strerror or exc}"
                self._count(inv, "not_started", why)
                log.error("notify %s: %s", inv.describe(), why)
                return
            timed_out = False
            try:
                code = proc.wait(inv.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                code = self._kill(proc)
            took = time.monotonic() - t0
            text = _tail(out)
        said = f"; output: {text}" if text else ""
        if timed_out:
            why = f"still running after its timeout of {inv.timeout:g} s: killed{said}"
            self._count(inv, "timed_out", why)
            log.error("notify %s: %s", inv.describe(), why)
        elif code != 0:
            status = f"exit status {code}" if code > 0 else \
                f"killed by {_signame(-code)}"
            why = f"{status} after {took:.3f} s{said}"
            self._count(inv, "failed", why)
            log.warning("notify %s: %s", inv.describe(), why)
        else:
            self._count(inv, "ok")
            log.info("notify %s: exit status 0 after %.3f s%s", inv.describe(), took, said)

    def _kill(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM to the hook's process group, SIGKILL if it is still there later."""
        for sig, grace in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                return proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()


def _tail(out: Any) -> str:
    try:
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 4 * OUTPUT_TAIL))
        text = out.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:]


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Notifier:
    """A process's hooks: its configuration, its runner, and where it runs (cluster and
    node).  ``notify`` is safe to call from the event loop: it only queues."""

    def __init__(self, cfg: NotifyConfig | None, cluster: str, me: str,
                 parent: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.me = me
        self.parent = dict(os.environ if parent is None else parent)
        self.runner = HookRunner(cfg.max_running if cfg is not None else 1)

    def check(self) -> list[str]:
        """Warnings about configured programs that are not there (said once at start:
        the cluster file is the same on every node, the programs may not be)."""
        out: list[str] = []
        if self.cfg is None:
            return out
        path = self.parent.get("PATH")
        for key, argv in self.cfg.configured().items():
            found = shutil.which(argv[0], path=path)
            if found is None:
                out.append(f"notify.{key}: {argv[0]} is not an executable program on this "
                           "node: the hook will fail")
        return out

    def notify(self, notice: Notice) -> None:
        self.runner.submit(invocations(self.cfg, notice, self.cluster, self.me, self.parent))

    def stats(self) -> dict[str, Any]:
        return {"configured": sorted(self.cfg.configured()) if self.cfg else [],
                **self.runner.stats()}

    def close(self, wait: float = 5.0) -> None:
        self.runner.close(wait)
