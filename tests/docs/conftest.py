"""The package the documents install: the wheel and an offline wheelhouse of its
dependencies, built once per test session (the lab has no internet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from tests.docs.docrun import REPO


def dependencies() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def package_files() -> set[str]:
    """Every file of the package in the source tree (bytecode aside), as wheel paths
    (``kembar/lab/site/php/index.php``)."""
    src = REPO / "src"
    return {p.relative_to(src).as_posix() for p in (src / "kembar").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The wheel `make test` built (``KEMBAR_WHEEL``), else ``make wheel`` builds it."""
    given = os.environ.get("KEMBAR_WHEEL")
    if not given:
        res = subprocess.run(["make", "-s", "wheel"], cwd=REPO, capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        given = res.stdout.split()[-1]  # "built dist/kembar-….whl"
    path = Path(given) if os.path.isabs(given) else REPO / given
    assert path.is_file(), f"{given}: no such file"
    return path


@pytest.fixture(scope="session")
def wheelhouse() -> Iterator[Path]:
    """Wheels of every dependency, for installs without an index (pip's cache makes this
    quick after the first time; pyfuse3 has no binary wheel on PyPI and is built here)."""
    for out in _scratch("kembar-wheelhouse-"):
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out),
                              *dependencies()], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        yield out
