"""Descriptive statistics shared by the report, the benchmark and the load test.

One percentile for the whole project, so a p95 in the monthly report, in
``make bench`` and in the load test means the same thing.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """The ``p``-th percentile (``p`` from 0 to 100) of ``values``, ``None`` when empty.

    Linear interpolation between the closest ranks: numpy's default
    (``numpy.percentile(values, p, method="linear")``), the same as
    ``statistics.quantiles(values, method="inclusive")``. Not nearest rank.
    """
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100.0
    lower = math.floor(k)
    upper = min(lower + 1, len(data) - 1)
    return data[lower] + (data[upper] - data[lower]) * (k - lower)
