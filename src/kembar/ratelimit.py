"""At most one log line per reason every so often; the lines held back are counted and
named in the next one let through (pure: the caller gives the monotonic time).  A peer
that keeps failing the same way (a wrong secret, a flood of forged packets) is counted
in full, but does not fill the log."""

from __future__ import annotations


class LogLimiter:
    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def check(self, key: str, now: float) -> int | None:
        """None: hold this line back; else how many lines of ``key`` were held back
        since the last one let through."""
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


def held_note(held: int) -> str:
    return f" ({held} more like it not logged)" if held else ""
