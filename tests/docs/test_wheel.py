"""The package docs/install.md installs: ``make wheel``'s wheel holds every module and
every data file of the source tree, and declares the dependencies and the ``kembar``
command.  (That it installs into a fresh virtual environment without an index, and that
the command and the data files work there, is shown by test_install_doc.py: the document
does exactly that on two fresh lab nodes.)"""

from __future__ import annotations

import zipfile
from email.parser import Parser
from pathlib import Path

from tests.docs.conftest import dependencies, package_files as _tree


def test_the_wheel_holds_the_whole_package_and_its_command(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(info).decode())
        entry = z.read(info.replace("METADATA", "entry_points.txt")).decode()
    package = {n for n in names if n.startswith("kembar/")}
    missing = _tree() - package
    assert not missing, f"not in the wheel (package-data in pyproject.toml?): {missing}"
    # nothing stale either (setuptools packs what an old build/ directory holds)
    assert package <= _tree(), package - _tree()
    assert "kembar = kembar.cli.main:main" in entry
    assert set(dependencies()) <= set(meta.get_all("Requires-Dist") or [])
    assert meta["Requires-Python"] == ">=3.11"
