from __future__ import annotations

from typing import Iterator

import pytest

from kembar.lab.pair import sweep


@pytest.fixture(scope="session", autouse=True)
def _sweep_leftovers() -> Iterator[None]:
    """Processes of a previous, hard-killed test run must not disturb this one."""
    sweep()
    yield
    sweep()
