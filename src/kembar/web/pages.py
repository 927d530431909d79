"""The dashboard's files (package data in ``kembar/web/static``) and their few fill-ins.

The pages are plain HTML with ``{{name}}`` placeholders filled with HTML-escaped values;
the script and the style sheet are served as they are.  No build step, nothing fetched
from elsewhere (the page's Content-Security-Policy allows only this server).
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources

ASSETS = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}


@lru_cache(maxsize=None)
def read(name: str) -> str:
    return (resources.files("kembar.web") / "static" / name).read_text(encoding="utf-8")


def fill(name: str, **values: str) -> str:
    """The page ``name`` with each ``{{key}}`` replaced by its escaped value."""
    text = read(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text
