"""The fuzz budget of the ``test_fuzz_*`` modules (issue 8, "Hostile input").

Every fuzz test runs under the ``fuzz`` hypothesis profile: derandomized (CI runs the same
examples every time, so a red run is reproducible), no per-example deadline, no example
database (nothing is written to the tree).  ``fuzz(n)`` gives a test a budget of ``n``
examples; all fuzz modules together take under a minute on the CI machine.

Longer local runs scale every budget: ``KEMBAR_FUZZ_SCALE=10 .venv/bin/python -m pytest
tests/*/test_fuzz_*.py`` (still derandomized: a failure reproduces with the same scale).

``only(errors, fn, ...)`` is the property every decoder/loader fuzzer checks: ``fn``
returns, or raises one of the documented ``errors`` with a non-empty message; anything
else (IndexError, struct.error, UnicodeDecodeError, RecursionError, KeyError, a bare
ValueError ...) propagates and fails the test with the input that caused it; so does a
call that takes longer than ``SLOW`` seconds (a near-hang: quadratic work, a huge loop).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("KEMBAR_FUZZ_SCALE", "1") or 1)
SLOW = 5.0  # seconds for one decode/load: generous for two busy shared cores

settings.register_profile(
    "fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)

T = TypeVar("T")


def fuzz(examples: int) -> settings:
    """The ``fuzz`` profile with a budget of ``examples`` (times ``KEMBAR_FUZZ_SCALE``)."""
    return settings(settings.get_profile("fuzz"), max_examples=max(1, round(examples * SCALE)))


def only(errors: type[BaseException] | tuple[type[BaseException], ...],
         fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | BaseException:
    """``fn(*args, **kwargs)``, or the documented error it raised (with a message)."""
    t0 = time.monotonic()
    try:
        result: T | BaseException = fn(*args, **kwargs)
    except errors as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        result = exc
    elapsed = time.monotonic() - t0
    assert elapsed < SLOW, f"{getattr(fn, '__name__', fn)} took {elapsed:.1f} s"
    return result


def byte_op(buf: bytearray, op: tuple[Any, ...]) -> None:
    """One generic mutation of ``buf`` in place (the fuzzers' shared ops): ``flip`` a bit,
    ``set`` a byte, ``cut`` a run, ``insert`` bytes, ``truncate``, or else extend."""
    if not buf:
        buf += b"\0"
    elif op[0] == "flip":
        buf[op[1] % len(buf)] ^= 1 << op[2]
    elif op[0] == "set":
        buf[op[1] % len(buf)] = op[2]
    elif op[0] == "cut":
        at = op[1] % len(buf)
        del buf[at:at + op[2]]
    elif op[0] == "insert":
        at = op[1] % (len(buf) + 1)
        buf[at:at] = op[2]
    elif op[0] == "truncate":
        del buf[op[1] % len(buf):]
    else:
        buf += op[1]


def byte_ops(cut: int, insert: int, extend: int) -> list[st.SearchStrategy[tuple[Any, ...]]]:
    """The strategies of ``byte_op``'s generic ops (a fuzzer adds its own field ops)."""
    return [
        st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
        st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
        st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, cut)),
        st.tuples(st.just("insert"), st.integers(0, 10**6),
                  st.binary(min_size=1, max_size=insert)),
        st.tuples(st.just("truncate"), st.integers(0, 10**6)),
        st.tuples(st.just("extend"), st.binary(min_size=1, max_size=extend)),
    ]
