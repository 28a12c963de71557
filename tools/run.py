"""Starts the whole assistant for `make run`: action server, Rasa server (REST channel,
WhatsApp channel, HTTP API) and the KCC desk, with clean shutdown on Ctrl-C.

Ports come from ACTION_PORT (5055), RASA_PORT (5005) and DESK_PORT (5080).
`--shell` starts the action server and `rasa shell` instead (chat in this terminal).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import List, Optional

import requests

from appcare import content, live_model, roadworks_feed
from appcare.nlp_pipeline import OFFLINE_NAME, STOCK_NAME
from tools import validate_content

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def latest_model() -> Optional[Path]:
    """The model the content editors put live (models/live-model.txt), else the newest."""
    return live_model.read(ROOT / "models") or live_model.newest(ROOT / "models")


def model_spacy_pipeline(model: Path) -> str:
    """Which Dutch spaCy pipeline a trained model was trained with (from its metadata)."""
    with tarfile.open(model) as archive:
        member = next((m for m in archive.getmembers() if m.name.lstrip("./") == "metadata.json"), None)
        if member is None:
            return "unknown"
        metadata = json.load(archive.extractfile(member))
    text = json.dumps(metadata)
    if OFFLINE_NAME in text:
        return OFFLINE_NAME
    if STOCK_NAME in text:
        return STOCK_NAME
    return "unknown"


def write_endpoints(action_port: int) -> Path:
    target = ROOT / "var" / "endpoints.run.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (ROOT / os.environ.get("APPCARE_ENDPOINTS", "endpoints.yml")).read_text(encoding="utf-8")
    text = text.replace("http://127.0.0.1:5055/webhook", f"http://127.0.0.1:{action_port}/webhook")
    target.write_text(text, encoding="utf-8")
    return target


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def start(cmd: List[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)


def stop(processes: List[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def startup_report(model: Path) -> None:
    print(f"[appcare] model: {model.name}")
    print(f"[appcare] Dutch spaCy pipeline in this model: {model_spacy_pipeline(model)}")
    for municipality in content.available_municipalities():
        try:
            loaded = content.load_uncached(municipality)
        except content.ContentError as exc:
            print(f"[appcare] content {municipality}: BROKEN ({len(exc.problems)} problem(s)); run `make validate-content`")
            continue
        count, stale = len(loaded.unverified_facts()), len(validate_content.stale_facts(loaded))
        print(f"[appcare] content {municipality}: {count} unverified fact(s), {stale} stale fact(s) "
              f"(checked more than a year ago) (strict mode {'on' if content.strict_facts() else 'off'}; "
              f"`make validate-content` lists them)")
        # where the roadworks come from: an example feed is never used in strict mode
        print(f"[appcare] roadworks {municipality}: {roadworks_feed.source_status(loaded)}")
    print(f"[appcare] default municipality: {content.default_municipality()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shell", action="store_true", help="chat in this terminal with `rasa shell`")
    parser.add_argument("--no-desk", action="store_true")
    args = parser.parse_args()
    model = latest_model()
    if not model:
        print("[appcare] no trained model in models/; run `make train`")
        return 1
    startup_report(model)
    action_port = int(os.environ.get("ACTION_PORT", "5055"))
    rasa_port = int(os.environ.get("RASA_PORT", "5005"))
    desk_port = int(os.environ.get("DESK_PORT", "5080"))
    endpoints = write_endpoints(action_port)
    processes: List[subprocess.Popen] = []
    try:
        logging_config = ["--logging-config-file", str(ROOT / "deploy" / "logging.yml")]
        interface = os.environ.get("RASA_INTERFACE", "127.0.0.1")  # nothing listens on other networks
        # Rasa's HTTP API: on 127.0.0.1 without authentication for development tools (the dev
        # set reads trackers), or with RASA_JWT_SECRET set, JWT as in production (the desk signs).
        jwt_secret = os.environ.get("RASA_JWT_SECRET")
        jwt_args = ["--jwt-secret", jwt_secret, "--jwt-method", "HS256"] if jwt_secret else []
        processes.append(start([sys.executable, "-m", "appcare.action_server", "--port", str(action_port),
                                "--interface", interface]))
        if not wait_for(f"http://127.0.0.1:{action_port}/health", 120):
            print("[appcare] action server did not start")
            return 1
        if args.shell:
            return subprocess.call([str(BIN / "rasa"), "shell", "--model", str(model), "--endpoints", str(endpoints)], cwd=ROOT)
        processes.append(start([
            str(BIN / "rasa"), "run", "--model", str(model), "--enable-api", "--port", str(rasa_port),
            "--interface", interface, *jwt_args,
            "--credentials", os.environ.get("APPCARE_CREDENTIALS", "credentials.yml"), "--endpoints", str(endpoints),
            *logging_config,
        ]))
        if importlib.util.find_spec("desk") and not args.no_desk:
            os.environ.setdefault("RASA_URL", f"http://127.0.0.1:{rasa_port}")
            processes.append(start([sys.executable, "-m", "desk"]))
        if wait_for(f"http://127.0.0.1:{rasa_port}/", 300):
            print(f"[appcare] ready: REST http://127.0.0.1:{rasa_port}/webhooks/rest/webhook, "
                  f"WhatsApp webhook /webhooks/whatsapp/webhook, desk http://127.0.0.1:{desk_port}/")
            print("[appcare] chat in another terminal with `make chat`; stop with Ctrl-C")
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        print("[appcare] a component stopped; shutting down")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
