from __future__ import annotations

import itertools
import os
import re
from typing import Callable, Iterator

import pytest

from kembar.lab.lab import Lab, all_labs
from kembar.lab.pair import sweep
from tests.labtools import leftovers, owner_alive

_count = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _sweep_leftovers() -> Iterator[None]:
    """Processes of a previous, hard-killed test run must not disturb this one."""
    sweep()
    yield
    sweep()


def _labs() -> Iterator[Callable[..., Lab]]:
    made: list[Lab] = []

    def make(**kw: object) -> Lab:
        lab = Lab(f"t{os.getpid() % 1000}x{next(_count)}")
        made.append(lab)
        lab.up(**kw)  # type: ignore[arg-type]
        return lab

    yield make
    for lab in made:
        lab.down()
        assert leftovers(lab) == []


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    yield from _labs()


@pytest.fixture(scope="module")
def make_module_lab() -> Iterator[Callable[..., Lab]]:
    """Labs shared by the tests of one module (removed after its last test)."""
    yield from _labs()


@pytest.fixture(scope="session", autouse=True)
def _no_test_labs_left() -> Iterator[None]:
    """Labs of an earlier, hard-killed test run (whose owner is gone) are removed first."""
    for name in all_labs():
        if re.match(r"^t[0-9]+[xk][0-9]*$", name) and not owner_alive(Lab(name)):
            Lab(name).down()
    yield
