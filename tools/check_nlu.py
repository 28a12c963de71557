"""Fails when the held-out NLU evaluation is below the required intent macro-F1."""
from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", help="intent_report.json written by `rasa test nlu`")
    parser.add_argument("--min-macro-f1", type=float, default=0.90)
    args = parser.parse_args()
    with open(args.report, encoding="utf-8") as handle:
        report = json.load(handle)
    macro = report["macro avg"]["f1-score"]
    accuracy = report.get("accuracy", 0.0)
    weak = sorted(
        (name, values["f1-score"]) for name, values in report.items()
        if isinstance(values, dict) and "f1-score" in values and name not in ("macro avg", "weighted avg", "micro avg")
        and values["f1-score"] < 0.8
    )
    print(f"held-out intent accuracy={accuracy:.3f} macro-F1={macro:.3f} (minimum {args.min_macro_f1:.2f})")
    for name, f1 in weak:
        print(f"  weak intent: {name} F1={f1:.2f}")
    if macro < args.min_macro_f1:
        print("FAILED: intent macro-F1 below the minimum")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
