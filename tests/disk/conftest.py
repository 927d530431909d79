from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kembar.lab.pair import Pair


@pytest.fixture
def make_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Pair]]:
    """Build two-node disk pairs; every process started is killed by PID afterwards."""
    pairs: list[Pair] = []

    def make(**kw: object) -> Pair:
        root: Path = tmp_path_factory.mktemp("kembar-test-")
        pair = Pair(root, **kw)  # type: ignore[arg-type]
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.cleanup()
        shutil.rmtree(pair.root, ignore_errors=True)
