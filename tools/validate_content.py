"""Validates every content file and lists facts that still need verification.

Exit code 1 when a file is broken; the message names the file, line and problem.
"""
from __future__ import annotations

import sys

from appcare import content


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
        print(f"{municipality}: OK, {len(unverified)} unverified fact(s) to confirm")
        for path in unverified:
            print(f"  - {path}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
