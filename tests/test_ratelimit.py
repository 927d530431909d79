"""One log line per reason every so often, the rest counted (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kembar.ratelimit import LogLimiter, held_note


def test_one_line_per_reason_per_period_and_the_held_back_ones_named() -> None:
    lim = LogLimiter(10.0)
    assert lim.check("auth", 0.0) == 0
    assert [lim.check("auth", t) for t in (0.2, 0.4, 9.9)] == [None, None, None]
    assert lim.check("replay", 1.0) == 0  # another reason: its own period
    assert lim.check("auth", 10.0) == 3
    assert lim.check("auth", 10.1) is None
    assert held_note(3) == " (3 more like it not logged)" and held_note(0) == ""


@given(st.lists(st.floats(0, 1000), max_size=200).map(sorted))
def test_every_line_is_logged_or_counted_and_never_two_within_a_period(
        times: list[float]) -> None:
    lim = LogLimiter(10.0)
    logged, held_total = [], 0
    for t in times:
        held = lim.check("k", t)
        if held is not None:
            logged.append(t)
            held_total += held
    assert all(b - a >= 10.0 for a, b in zip(logged, logged[1:]))
    assert len(logged) + held_total + (lim._held.get("k", 0)) == len(times)
