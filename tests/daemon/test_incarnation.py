"""The node's incarnation across restarts and clock jumps (issue 8: the torture cannot jump
one lab node's wall clock — CLOCK_REALTIME is not namespaced — so the one place where
kembar's membership reads the wall clock is tested here; every timer and timeout runs on
the monotonic clock, which the membership state machine takes as its input)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kembar.daemon import incarnation
from kembar.daemon.incarnation import next_incarnation


def test_each_start_is_greater_even_when_the_wall_clock_jumps_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "kb-inc" / "incarnation")
    monkeypatch.setattr(incarnation.time, "time", lambda: 2_000_000_000.0)
    first = next_incarnation(path)
    assert first == 2_000_000_000
    monkeypatch.setattr(incarnation.time, "time", lambda: 1_000_000_000.0)  # a day... back
    assert next_incarnation(path) == first + 1  # the peers see a restart, not a replay
    monkeypatch.setattr(incarnation.time, "time", lambda: 3_000_000_000.0)  # and forward
    assert next_incarnation(path) == 3_000_000_000
    assert os.listdir(tmp_path / "kb-inc") == ["incarnation"]  # replaced atomically


@pytest.mark.parametrize("content", ["", "garbage\n", "-5\n"])
def test_a_lost_or_damaged_file_still_gives_a_greater_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> None:
    path = tmp_path / "incarnation"
    path.write_text(content)
    monkeypatch.setattr(incarnation.time, "time", lambda: 1_700_000_000.5)
    assert next_incarnation(str(path)) == 1_700_000_000
    assert path.read_text() == "1700000000\n"
