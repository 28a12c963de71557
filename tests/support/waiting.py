"""Bounded waiting for a state, for tests of background work.

A test that wants to say "nothing (more) happened" first waits for the state
that proves the work is over - a final database status, a log line, a worker
that ended - instead of sleeping a fixed time and hoping that was long enough.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def wait_for_state(
    what: str,
    probe: Callable[[], T],
    done: Optional[Callable[[T], bool]] = None,
    timeout: float = 20.0,
    interval: float = 0.02,
) -> T:
    """Polls ``probe()`` until ``done(value)`` (default: the value is truthy) and
    returns that value. Raises AssertionError naming ``what`` and the last value
    seen when the state does not come within ``timeout`` seconds."""
    check = done or bool
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if check(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {value!r}")
        time.sleep(interval)  # poll interval, not a guess at how long the work takes
