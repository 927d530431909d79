"""Durations and sizes as written in the cluster file: ``"500ms"``, ``"6s"``, ``"100M"``.

A plain number is seconds (durations) or bytes (sizes). Size suffixes are binary:
``K``/``k``/``KB``/``KiB`` all mean 1024. Bad input raises :class:`ConfigError` naming
the key; the model layer uses :func:`to_seconds` / :func:`to_bytes`, which raise a plain
:class:`UnitError` (a ``ValueError``) so pydantic can attach the key path itself.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from kembar.errors import ConfigError

__all__ = [
    "UnitError",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "to_bytes",
    "to_seconds",
]

_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_RE = re.compile(_NUMBER + r"\s*(ms|s|m|h)?", re.IGNORECASE)
_SIZE_RE = re.compile(_NUMBER + r"\s*([a-z]*)", re.IGNORECASE)

_DURATION_UNITS: dict[str, Fraction | int] = {"": 1, "ms": Fraction(1, 1000), "s": 1, "m": 60, "h": 3600}
_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgt", start=1):
    for _suffix in (_letter, _letter + "b", _letter + "ib"):
        _SIZE_UNITS[_suffix] = 1024**_power

_SIZE_NAMES = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


class UnitError(ValueError):
    """A duration or size could not be understood; the message says why, without the key."""


def to_seconds(value: object) -> float:
    """Return ``value`` (number of seconds or ``"<n>[ms|s|m|h]"``) as float seconds."""
    if isinstance(value, bool):
        raise UnitError("expected a duration such as 500ms, 6s, 2m, 1h, not a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise UnitError(f"duration must be a finite number >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise UnitError("expected a duration such as 500ms, 6s, 2m, 1h")
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise UnitError(f"invalid duration {_show(value)} (use e.g. 500ms, 6s, 2m, 1h)")
    number, unit = match.group(1), (match.group(2) or "").lower()
    try:
        seconds = float(Fraction(number) * _DURATION_UNITS[unit])
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise UnitError(f"duration {_show(value)} is too large")
    return seconds


def to_bytes(value: object) -> int:
    """Return ``value`` (a byte count or ``"<n>[K|M|G|T][B|iB]"``) as int bytes."""
    if isinstance(value, bool):
        raise UnitError("expected a size such as 100M or 1G, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"size must be >= 0, got {value}")
        return value
    if not isinstance(value, str):
        raise UnitError("expected a size: a whole number of bytes or e.g. 100M, 1G")
    match = _SIZE_RE.fullmatch(value.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UnitError(f"invalid size {_show(value)} (use e.g. 4096, 512K, 100M, 1G, 2T)")
    amount = Fraction(match.group(1)) * _SIZE_UNITS[unit]
    if amount.denominator != 1:
        raise UnitError(f"size {_show(value)} is not a whole number of bytes")
    return int(amount)


def parse_duration(value: str | int | float, key: str) -> float:
    """Parse a duration for config key ``key``; ConfigError (naming the key) if bad."""
    try:
        return to_seconds(value)
    except UnitError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def parse_size(value: str | int, key: str) -> int:
    """Parse a size in bytes for config key ``key``; ConfigError (naming the key) if bad."""
    try:
        return to_bytes(value)
    except UnitError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def format_duration(seconds: float) -> str:
    """A short human form that :func:`parse_duration` reads back: ``500ms``, ``6s``, ``2m``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_trim(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{_trim(seconds)}s"


def format_size(nbytes: int) -> str:
    """A short human form with binary units: ``512 B``, ``1.0 GiB``, ``1.5 MiB``."""
    for name, size in _SIZE_NAMES:
        if nbytes >= size:
            return f"{nbytes / size:.1f} {name}"
    return f"{nbytes} B"


def _trim(number: float) -> str:
    text = f"{number:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _show(value: str) -> str:
    """Quote a bad input for a message, cut short so one line stays one line."""
    text = value if len(value) <= 40 else value[:37] + "..."
    return repr(text)
