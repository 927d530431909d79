"""Notify hooks: a command per cluster event (DRBD's handlers, keepalived's notify scripts).

``events`` decides (pure): which event a daemon history entry is, which commands run for
it, with which environment.  ``runner`` spawns them (threads and processes, time-bounded,
never blocking the caller).  The configuration is ``kembar.config.notify``.
"""

from kembar.notify.events import Invocation, Notice, from_history, invocations
from kembar.notify.runner import HookRunner, Notifier

__all__ = ["HookRunner", "Invocation", "Notice", "Notifier", "from_history", "invocations"]
