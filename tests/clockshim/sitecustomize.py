"""A process started with this directory on PYTHONPATH and PROJCTL_TEST_CLOCK_SKEW=SECONDS runs
with its wall clock that many seconds off (time.time and time.time_ns): the clock faults of
tests/test_sync_faults.py, in real daemons and hubs."""

from __future__ import annotations

import os
import time

_SKEW = float(os.environ.get("PROJCTL_TEST_CLOCK_SKEW") or 0)
if _SKEW:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SKEW
    time.time_ns = lambda: _time_ns() + int(_SKEW * 1e9)
