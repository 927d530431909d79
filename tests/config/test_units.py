"""Durations and sizes: parsing, formatting, and errors that name the key."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kembar.config.units import format_duration, format_size, parse_duration, parse_size
from kembar.errors import ConfigError

KIB = 1024


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("6s", 6.0), ("2m", 120.0), ("1h", 3600.0), (10, 10.0), (0.25, 0.25),
     ("1.5s", 1.5), (" 3 s ", 3.0), ("7", 7.0), ("0", 0.0), ("2H", 7200.0)],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text, "timeout") == seconds


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("100M", 100 * KIB**2), ("1G", KIB**3), (0, 0), ("0", 0), (4096, 4096), ("4k", 4 * KIB),
     ("4K", 4 * KIB), ("4KB", 4 * KIB), ("4KiB", 4 * KIB), ("2MiB", 2 * KIB**2), ("3GiB", 3 * KIB**3),
     ("1T", KIB**4), ("1TiB", KIB**4), ("1.5K", 1536), ("1.0 GiB", KIB**3), ("12B", 12)],
)
def test_parse_size(text: str | int, nbytes: int) -> None:
    assert parse_size(text, "resync_rate") == nbytes


@pytest.mark.parametrize(
    "bad", ["", "x", "-1", "-1s", "nan", "inf", "1d", "1 2s", "s", "1e3", True, float("nan"),
            float("inf"), -1, -0.5, None, [1], "1" + "0" * 400 + "h"],
)
def test_bad_duration_names_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^disks\.r0\.timeout: "):
        parse_duration(bad, "disks.r0.timeout")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", "x", "-1", "-1M", "nan", "inf", "1X", "1MM", "1.5", "0.1K", "M", True, -1, 1.5,
            float("nan"), None],
)
def test_bad_size_names_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^disks\.r0\.resync_rate: "):
        parse_size(bad, "disks.r0.resync_rate")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(0, "0 B"), (512, "512 B"), (KIB, "1.0 KiB"), (KIB**3, "1.0 GiB"), (3 * KIB**2 // 2, "1.5 MiB"),
     (2 * KIB**4, "2.0 TiB")],
)
def test_format_size(nbytes: int, text: str) -> None:
    assert format_size(nbytes) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (6, "6s"), (120, "2m"), (3600, "1h"), (90, "90s"), (1.25, "1.25s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


SIZE_UNITS = {"": 1, "B": 1, "k": KIB, "K": KIB, "KB": KIB, "KiB": KIB, "M": KIB**2, "MiB": KIB**2,
              "G": KIB**3, "GiB": KIB**3, "T": KIB**4, "TiB": KIB**4}


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(SIZE_UNITS)))
def test_size_roundtrip(number: int, unit: str) -> None:
    assert parse_size(f"{number}{unit}", "k") == number * SIZE_UNITS[unit]


@given(st.integers(min_value=0, max_value=2**62))
def test_size_int_and_format_roundtrip(nbytes: int) -> None:
    assert parse_size(nbytes, "k") == nbytes
    assert parse_size(str(nbytes), "k") == nbytes
    shown = format_size(nbytes)
    assert re.fullmatch(r"\d+ B|\d+\.\d (KiB|MiB|GiB|TiB)", shown)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", ""]))
def test_duration_roundtrip(number: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "": 1}[unit]
    assert math.isclose(parse_duration(f"{number}{unit}", "k"), number * factor)


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_duration_format_roundtrip(seconds: float) -> None:
    assert parse_duration(seconds, "k") == seconds
    assert math.isclose(parse_duration(format_duration(seconds), "k"), seconds, abs_tol=1e-3)


@given(st.text(max_size=30))
def test_junk_gives_config_error_only(junk: str) -> None:
    for parse in (parse_duration, parse_size):
        try:
            value = parse(junk, "some.key")
        except ConfigError as exc:
            assert str(exc).startswith("some.key: ")
            assert "\n" not in str(exc)
        else:
            assert value >= 0 and math.isfinite(value)
