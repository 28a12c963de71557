"""Evaluates trained models for the editors' publish step (run as a subprocess).

    python -m desk.editor.eval --nlu tests/nlu_holdout.yml --stories tests/test_stories.yml \
        --domain domain --out results/editor MODEL.tar.gz [MODEL2.tar.gz ...]

For every model it measures what ``make test-nlu`` and ``make test-stories`` measure
(intent accuracy and macro-F1 on the held-out file, through the whole NLU pipeline
including the FallbackClassifier; the test stories with ``rasa test core``'s own
evaluation) and prints one JSON object ``{model path: figures}`` on the last line of
standard output. Several models are evaluated in one process, so TensorFlow is
imported once.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

RESULT_MARKER = "EDITOR_EVAL_RESULT "
_SKIP = ("macro avg", "weighted avg", "micro avg", "accuracy")


def intent_figures(report: Dict[str, Any]) -> Dict[str, Any]:
    """Accuracy, macro-F1 and per-intent F1 from an intent report (``intent_report.json``)."""
    per_intent = {
        name: round(float(values.get("f1-score", 0.0)), 4)
        for name, values in report.items()
        if isinstance(values, dict) and "f1-score" in values and name not in _SKIP
    }
    macro = report.get("macro avg", {}).get("f1-score", 0.0)
    return {
        "accuracy": round(float(report.get("accuracy", 0.0)), 4),
        "macro_f1": round(float(macro), 4),
        "per_intent": per_intent,
    }


def failed_story_names(path: Path) -> List[str]:
    if not path.exists():
        return []
    return re.findall(r"^\s*-\s*story:\s*(.+?)\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)


async def _evaluate(model: str, nlu: str, stories: str, domain: str, out: Path) -> Dict[str, Any]:
    from rasa.core.agent import Agent
    from rasa.core.test import test as core_test
    from rasa.nlu.test import run_evaluation

    agent = Agent.load(model_path=model)
    figures: Dict[str, Any] = {"model": model}
    nlu_out = out / "nlu"
    result = await run_evaluation(
        nlu, agent.processor, output_directory=str(nlu_out), disable_plotting=True,
        report_as_dict=True, domain_path=domain,
    )
    intent = (result or {}).get("intent_evaluation") or {}
    figures.update(intent_figures(intent.get("report") or {}))
    core_out = out / "core"
    core_out.mkdir(parents=True, exist_ok=True)
    await core_test(stories, agent, out_directory=str(core_out), disable_plotting=True, errors=True,
                    warnings=False)
    report_path = core_out / "story_report.json"
    conversation = {}
    if report_path.exists():
        conversation = json.loads(report_path.read_text(encoding="utf-8")).get("conversation_accuracy") or {}
    failed = failed_story_names(core_out / "failed_test_stories.yml")
    total = int(conversation.get("total") or 0)
    figures["stories_total"] = total
    figures["stories_failed"] = len(failed) if failed else max(0, total - int(conversation.get("correct") or 0))
    figures["failed_stories"] = failed
    return figures


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--nlu", required=True)
    parser.add_argument("--stories", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.simplefilter("ignore")
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    out_root = Path(args.out or tempfile.mkdtemp(prefix="editor-eval-"))
    results: Dict[str, Any] = {}
    started = time.monotonic()
    for index, model in enumerate(args.models):
        out = out_root / f"model{index}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            results[model] = asyncio.run(_evaluate(model, args.nlu, args.stories, args.domain, out))
        except Exception as exc:  # noqa: BLE001 - reported to the editor
            results[model] = {"model": model, "error": f"{type(exc).__name__}: {exc}"}
        print(f"[eval] {index + 1}/{len(args.models)} done after {time.monotonic() - started:.0f} s", flush=True)
    print(RESULT_MARKER + json.dumps(results), flush=True)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
