"""The KCC's opening hours: whether a municipality's KCC is open at a moment, and the
weekday hours for shading the report's hour chart."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from report.labels import WEEKDAYS_NL, default_municipality
from report.period import local

logger = logging.getLogger(__name__)


class KccHours:
    """Whether a municipality's KCC is open at a moment (cached per local day).

    Same rule as ``appcare.opening_hours.is_open(content, "kcc", moment)``.
    """

    def __init__(self) -> None:
        self._content: Dict[str, Any] = {}
        self._days: Dict[Tuple[str, dt.date], Optional[list]] = {}

    def _load(self, municipality: str):
        if municipality not in self._content:
            from appcare import content

            try:
                self._content[municipality] = content.load(municipality)
            except Exception as exc:  # noqa: BLE001 - unknown municipality: no KCC hours
                logger.warning("no content for municipality %s (%s)", municipality, type(exc).__name__)
                self._content[municipality] = None
        return self._content[municipality]

    def is_open(self, municipality: str, ts: float) -> Optional[bool]:
        moment = local(ts)
        key = (municipality, moment.date())
        if key not in self._days:
            from appcare import opening_hours

            content = self._load(municipality)
            self._days[key] = None if content is None else opening_hours.hours_on(content, "kcc", moment.date()).ranges
        ranges = self._days[key]
        if ranges is None:
            return None
        return any(start <= moment.time() < end for start, end in ranges)


def common_weekday_kcc_hours(municipalities: Sequence[str]) -> Optional[List[str]]:
    """The KCC's Monday-Friday hours when they are the same on all five days in all
    municipalities of the report (for shading the hour chart), else None."""
    from appcare import content

    seen = set()
    for municipality in municipalities or [default_municipality()]:
        try:
            weekly = content.load(municipality).kcc.hours.value
        except Exception:  # noqa: BLE001
            return None
        seen.update(tuple(weekly[day]) for day in WEEKDAYS_NL[:5])
    return list(seen.pop()) if len(seen) == 1 else None
