"""One training job of the editors' publish button (run by the desk as a subprocess,
with the project directory as working directory):

1. ``rasa data validate`` (Rasa's own command, run in this process);
2. ``rasa train`` with the given config into ``--out`` under the name ``--name``;
3. the evaluation of ``desk.editor.eval`` (held-out NLU file and test stories)
   of the new model and, when given, of the model that is live now. The live model
   is evaluated in a second process while this one validates and trains: loading a
   Rasa model is mostly single-threaded graph tracing, so on two cores the two
   overlap well.

Progress goes to standard output as ``EDITOR_PROGRESS {json}`` lines (Rasa's own
output, including the epoch bars of the DIET classifier, goes there too); the result
is written as JSON to ``--result``. Loading one Rasa/TensorFlow process for all
three steps saves a good half minute per publish.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from appcare.ops import processes

PROGRESS_MARKER = "EDITOR_PROGRESS "


def progress(stage: str, percent: int, message: str) -> None:
    print(PROGRESS_MARKER + json.dumps({"stage": stage, "percent": percent, "message": message}), flush=True)


def run_validate(data: str, domain: str, config: str) -> Optional[str]:
    """``rasa data validate``; None when valid, else a short reason."""
    from rasa.__main__ import create_argument_parser

    parser = create_argument_parser()
    args = parser.parse_args(["data", "validate", "--data", data, "--domain", domain, "--config", config])
    try:
        args.func(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return "rasa data validate vond fouten in de trainingsdata (zie het logboek hieronder)"
    return None


def run_train(data: str, domain: str, config: str, out: str, name: str) -> str:
    from rasa.api import train

    result = train(domain=domain, config=config, training_files=[data], output=out, fixed_model_name=name,
                   force_training=True)
    if result.code != 0 or not result.model:
        raise RuntimeError(f"rasa train stopte met code {result.code}")
    return result.model


def run_evaluate(models: List[str], nlu: str, stories: str, domain: str, out: Path) -> Dict[str, Any]:
    from desk.editor.eval import _evaluate

    results = {}
    for index, model in enumerate(models):
        target = out / f"model{index}"
        target.mkdir(parents=True, exist_ok=True)
        results[model] = asyncio.run(_evaluate(model, nlu, stories, domain, target))
    return results


def start_old_evaluation(args: argparse.Namespace):
    """Starts ``desk.editor.eval`` of the live model in a second process."""
    out = Path(args.out) / f"{args.name}-eval-old"
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "eval.log", "w+b")
    proc = processes.start(  # in the job's process group: stopping the job stops it too
        [sys.executable, "-m", "desk.editor.eval", "--nlu", args.nlu_holdout, "--stories", args.stories,
         "--domain", args.domain, "--out", str(out), args.evaluate_old],
        name="eval-old", log=log, cwd=None, new_group=False,
    )
    return proc, log


def finish_old_evaluation(old_eval, model: str) -> Dict[str, Any]:
    from desk.editor.eval import RESULT_MARKER

    proc, log = old_eval
    proc.wait()
    log.seek(0)
    for line in reversed(log.read().decode("utf-8", "replace").splitlines()):
        if RESULT_MARKER in line:
            return json.loads(line.split(RESULT_MARKER, 1)[1]).get(model) or {"error": "geen resultaat"}
    return {"error": f"het testen van het huidige model stopte met code {proc.returncode}"}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--nlu-holdout", required=True)
    parser.add_argument("--stories", required=True)
    parser.add_argument("--evaluate-old", default=None, help="the live model, when its figures are not known yet")
    parser.add_argument("--result", required=True)
    parser.add_argument("--no-eval", action="store_true", help="only validate and train")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    warnings.simplefilter("ignore")
    sys.path.insert(1, os.getcwd())
    result: Dict[str, Any] = {"ok": False}
    started = time.monotonic()
    old_eval = start_old_evaluation(args) if args.evaluate_old and not args.no_eval else None
    try:
        progress("validate", 2, "Trainingsdata controleren (rasa data validate)")
        from rasa.utils.common import configure_logging_and_warnings
        from rasa.utils.log_utils import configure_structlog

        configure_logging_and_warnings(logging.WARNING)
        configure_structlog(logging.WARNING)
        # configure_logging_and_warnings sets LOG_LEVEL=WARNING, which also switches off
        # the training's progress bars (the policies' "Processed ..." bars, DIET's
        # "Epochs" bar when a config trains DIET): the desk shows them in the job log.
        os.environ["LOG_LEVEL"] = "INFO"
        problem = run_validate(args.data, args.domain, args.config)
        if problem:
            result.update(stage="validate", error=problem)
            return 1
        progress("train", 10, "Model trainen")
        model = run_train(args.data, args.domain, args.config, args.out, args.name)
        result["model"] = model
        if args.no_eval:
            result.update(ok=True, new=None, old=None)
            return 0
        progress("evaluate", 80, "Nieuw model testen op de testvragen en testverhalen")
        figures = run_evaluate([model], args.nlu_holdout, args.stories, args.domain, Path(args.out) / f"{args.name}-eval")
        old = finish_old_evaluation(old_eval, args.evaluate_old) if old_eval else None
        result.update(ok=True, new=figures[model], old=old)
        progress("evaluate", 95, "Testen klaar")
        return 0
    except Exception as exc:  # noqa: BLE001 - the desk shows it to the editor
        traceback.print_exc()
        result.update(stage=result.get("stage") or ("evaluate" if result.get("model") else "train"),
                      error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if old_eval and old_eval[0].poll() is None:
            old_eval[0].kill()
            old_eval[0].wait()
        result["seconds"] = round(time.monotonic() - started, 1)
        Path(args.result).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
