"""Secret files (a disk's replication secret, the dashboard's password): a regular file
that only its owner may read or write, UTF-8, one line, trailing newline stripped."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_private_file(path: str, what: str, shortest: int, longest: int,
                      say_length: bool = False) -> str:
    """The ``what`` ("secret", "password") in ``path``; ValueError saying what is wrong."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ValueError(f"{path} is accessible by group or others (mode {mode:o}); "
                             f"run chmod 600 {path}")
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not shortest <= len(text) <= longest:
        raise ValueError(f"the {what} in {path} must be {shortest} to {longest} characters "
                         "long" + (f" (it has {len(text)})" if say_length else ""))
    if "\n" in text or "\r" in text:
        raise ValueError(f"the {what} in {path} must be one line")
    return text
