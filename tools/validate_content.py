"""Validates every content file and the citizen labels (appcare/labels.yml), and lists
facts that still need verification.

Exit code 1 when a file is broken; the message names the file, line and problem.
Facts whose ``checked`` date lies more than a year back are listed as a warning (the
exit code stays 0): the editors' pages mark them too, and `make run` counts them.
"""
from __future__ import annotations

import datetime as dt
import sys
from typing import List, Optional, Tuple

from appcare import clock, content, labels
from appcare.content import STALE_AFTER_DAYS


def stale_facts(loaded: content.MunicipalContent, today: Optional[dt.date] = None) -> List[Tuple[str, dt.date]]:
    """(dotted path, checked date) of the facts checked at their source more than a year
    (STALE_AFTER_DAYS, as on the editors' pages) before ``today``."""
    today = today or clock.now().date()
    return [(path, fact.checked) for path, fact in content.iter_facts(loaded)
            if (today - fact.checked).days > STALE_AFTER_DAYS]


def main() -> int:
    broken = False
    municipalities = content.available_municipalities()
    if not municipalities:
        print(f"no content files found in {content.CONTENT_DIR}")
        return 1
    for municipality in municipalities:
        try:
            loaded = content.load_uncached(municipality)
        except content.ContentError as exc:
            broken = True
            print(f"ERROR in content of {municipality}:")
            for problem in exc.problems:
                print(f"  {problem}")
            continue
        unverified = loaded.unverified_facts()
        stale = stale_facts(loaded)
        print(f"{municipality}: OK, {len(unverified)} unverified fact(s) to confirm, "
              f"{len(stale)} fact(s) checked more than a year ago")
        for path in unverified:
            print(f"  - {path}")
        for path, checked in stale:
            print(f"  WARNING: {path} was checked on {checked}, more than a year ago: check it at its source again")
    try:
        found = labels.load()
    except labels.LabelError as exc:
        broken = True
        print(f"ERROR in the labels: {exc}")
    else:
        print(f"labels: OK, {len(found)} label(s) in {labels.LABELS_FILE}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
