"""Graph API versions and the day Meta switches each off.

Source: Meta, "Graph API changelog - Versions",
https://developers.facebook.com/docs/graph-api/changelog/versions/ (checked 2026-12-07).
Meta supports a version for about two years and announces the date when the next-but-one
version comes out; add new versions here when Meta publishes them. A configured version
less than ``WARN_DAYS`` from its end (or past it, or not in this table) is logged as a
warning when the WhatsApp channel starts, so that an installation is never surprised.
"""
from __future__ import annotations

import datetime as dt
from typing import Dict, Optional

# version -> last day it is available (None: not announced yet)
EXPIRES: Dict[str, Optional[dt.date]] = {
    "v26.0": None,
    "v25.0": dt.date(2028, 7, 29),
    "v24.0": dt.date(2028, 2, 18),
    "v23.0": dt.date(2027, 10, 8),
    "v22.0": dt.date(2027, 5, 20),
    "v21.0": dt.date(2027, 1, 21),
    "v20.0": dt.date(2026, 9, 24),
    "v19.0": dt.date(2026, 5, 21),
    "v18.0": dt.date(2026, 1, 26),
}
# The default: a current version Meta supports until mid-2028.
DEFAULT_API_VERSION = "v25.0"
WARN_DAYS = 90


def expiry_warning(version: str, today: Optional[dt.date] = None) -> Optional[str]:
    """A warning about ``version`` (e.g. "v21.0"), or None when it is safe for now."""
    today = today or dt.date.today()
    if version not in EXPIRES:
        newest = max(EXPIRES, key=lambda v: float(v[1:]))
        if float(version.lstrip("v") or 0) > float(newest[1:]):
            return None  # newer than this table knows: fine
        return (f"Graph API version {version} is not supported by Meta (any more); "
                f"set WHATSAPP_API_VERSION to {DEFAULT_API_VERSION} or later")
    end = EXPIRES[version]
    if end is None:
        return None
    days = (end - today).days
    if days < 0:
        return (f"Graph API version {version} was switched off by Meta on {end.isoformat()}; "
                f"set WHATSAPP_API_VERSION to {DEFAULT_API_VERSION} or later")
    if days <= WARN_DAYS:
        return (f"Graph API version {version} stops working on {end.isoformat()} (in {days} days); "
                f"set WHATSAPP_API_VERSION to {DEFAULT_API_VERSION} or later")
    return None
