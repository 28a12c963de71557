"""Starts the whole assistant for `make run`: action server, Rasa server (REST channel,
WhatsApp channel, HTTP API) and the KCC desk, and stops all of them again.

Ports come from ACTION_PORT (5055), RASA_PORT (5005) and DESK_PORT (5080).
`--shell` starts the action server and `rasa shell` instead (chat in this terminal).

Stopping: Ctrl-C (SIGINT), SIGTERM (systemd, a CI runner, `kill`) and SIGHUP (the
terminal was closed) all stop every component: each runs in its own process group,
which gets SIGTERM, then SIGKILL for whatever still runs after APPCARE_STOP_TIMEOUT
seconds (default 15). Afterwards this process ends by the same signal (a shell shows
status 128 + the signal number, e.g. 143 for SIGTERM). When one component exits on its
own, the others are stopped too, the message names it, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import requests

from appcare import content, roadworks_feed
from appcare.ops import processes, quiet
from appcare.plugins import live_model
from appcare.plugins.nlp_pipeline import OFFLINE_NAME, STOCK_NAME
from tools import validate_content

ROOT = Path(__file__).resolve().parent.parent
RASA = [sys.executable, "-m", "appcare.ops.quiet", "rasa"]  # Rasa's command line, quiet unless VERBOSE=1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def describe_exit(child: processes.Process) -> str:
    """How a component ended, for the message that names it."""
    code = child.returncode
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


class Supervisor:
    """Starts the components and stops all of them on a stop signal, when one of them
    ends, or when start-up fails.

    The signal handlers only record the signal; the waiting loops below look at it.
    So a signal that arrives while a component is being started never leaves an
    untracked process behind.
    """

    def __init__(self, stop_timeout: Optional[float] = None) -> None:
        self.children: List[processes.Process] = []
        self.stop_signal: Optional[int] = None
        self.stop_timeout = stop_timeout if stop_timeout is not None else float(
            os.environ.get("APPCARE_STOP_TIMEOUT", "15"))
        self._previous: Dict[int, object] = {}

    # ------------------------------------------------------------------ signals
    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def stopping(self) -> bool:
        return self.stop_signal is not None

    # ------------------------------------------------------------------ children
    def start(self, name: str, cmd: List[str], own_group: bool = True) -> processes.Process:
        """Starts a component (output to this terminal). ``own_group=False`` keeps it in
        our process group and terminal (for `rasa shell`, which reads this terminal)."""
        child = processes.start(cmd, name=name, new_group=own_group)
        self.children.append(child)
        return child

    def ended(self) -> Optional[processes.Process]:
        """The first component that ended by itself, if any."""
        return next((c for c in self.children if c.poll() is not None), None)

    def keep_going(self) -> bool:
        return not self.stopping() and self.ended() is None

    def sleep(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; False as soon as a stop signal came or a component ended."""
        deadline = time.monotonic() + seconds
        while self.keep_going():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(0.2, left))
        return False

    def wait_for(self, url: str, seconds: float) -> bool:
        """Polls ``url`` until it answers (True), ``seconds`` pass, a stop signal comes
        or a component ends (False)."""
        deadline = time.monotonic() + seconds
        while self.keep_going() and time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return True
            except requests.RequestException:
                pass
            self.sleep(0.5)
        return False

    def wait(self) -> None:
        """Returns when a stop signal came or a component ended."""
        while self.sleep(3600):
            pass

    def stop(self) -> List[processes.Process]:
        """Stops every component and everything in their process groups: SIGTERM, up to
        ``stop_timeout`` seconds, then SIGKILL. Returns the components that needed SIGKILL."""
        if self._previous:  # ours are installed: a second Ctrl-C must not interrupt the clean-up
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)

        def killing(child: processes.Process) -> None:
            print(f"[appcare] {child.name} (pid {child.pid}) did not stop within {self.stop_timeout:g} s; killing it",
                  flush=True)

        return processes.stop(self.children, self.stop_timeout, on_kill=killing)

    def finish(self, code: int) -> int:
        """Stops everything; after a stop signal ends this process by that signal."""
        self.stop()
        if self.stop_signal is not None:
            print(f"[appcare] stopped ({signal.Signals(self.stop_signal).name})", flush=True)
            sys.stdout.flush()
            signal.signal(self.stop_signal, signal.SIG_DFL)
            os.kill(os.getpid(), self.stop_signal)
            return 128 + self.stop_signal  # only reached if the signal is blocked
        return code

    def report_end(self) -> int:
        """Says why the components are being stopped; the exit status for that."""
        ended = self.ended()
        if self.stop_signal is None and ended is not None:
            print(f"[appcare] {ended.name} (pid {ended.pid}) {describe_exit(ended)}; stopping the others",
                  flush=True)
            return 1
        return 0


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


def run(args: argparse.Namespace, supervisor: Supervisor) -> int:
    model = live_model.served(ROOT / "models")
    if not model:
        print("[appcare] no trained model in models/; run `make train`")
        return 1
    startup_report(model)
    action_port = int(os.environ.get("ACTION_PORT", "5055"))
    rasa_port = int(os.environ.get("RASA_PORT", "5005"))
    desk_port = int(os.environ.get("DESK_PORT", "5080"))
    endpoints = write_endpoints(action_port)
    logging_config = ["--logging-config-file", str(ROOT / "deploy" / "logging.yml")]
    interface = os.environ.get("RASA_INTERFACE", "127.0.0.1")  # nothing listens on other networks
    # Rasa's HTTP API: on 127.0.0.1 without authentication for development tools (the dev
    # set reads trackers), or with RASA_JWT_SECRET set, JWT as in production (the desk signs).
    jwt_secret = os.environ.get("RASA_JWT_SECRET")
    jwt_args = [f"--jwt-secret={jwt_secret}", "--jwt-method", "HS256"] if jwt_secret else []
    if not supervisor.keep_going():  # stopped while the report was printed
        return supervisor.report_end()
    supervisor.start("action server", [sys.executable, "-m", "appcare.plugins.action_server", "--port", str(action_port),
                                       "--interface", interface])
    if not supervisor.wait_for(f"http://127.0.0.1:{action_port}/health", 120):
        if supervisor.keep_going():
            print("[appcare] the action server did not answer within 120 s")
            return 1
        return supervisor.report_end()
    if args.shell:
        supervisor.start("rasa shell", [*RASA, "shell", "--model", str(model),
                                        "--endpoints", str(endpoints)], own_group=False)
        supervisor.wait()
        shell = supervisor.children[-1]
        if supervisor.stop_signal is None and supervisor.ended() is shell:
            return shell.returncode or 0  # the citizen typed /stop: a normal end
        return supervisor.report_end()
    supervisor.start("Rasa server", [
        *RASA, "run", "--model", str(model), "--enable-api", "--port", str(rasa_port),
        "--interface", interface, *jwt_args,
        "--credentials", os.environ.get("APPCARE_CREDENTIALS", "credentials.yml"), "--endpoints", str(endpoints),
        *logging_config,
    ])
    if importlib.util.find_spec("desk") and not args.no_desk:
        os.environ.setdefault("RASA_URL", f"http://127.0.0.1:{rasa_port}")
        supervisor.start("desk", [sys.executable, "-m", "desk"])
    if supervisor.wait_for(f"http://127.0.0.1:{rasa_port}/", 300):
        print(f"[appcare] ready: REST http://127.0.0.1:{rasa_port}/webhooks/rest/webhook, "
              f"WhatsApp webhook /webhooks/whatsapp/webhook, desk http://127.0.0.1:{desk_port}/", flush=True)
        print("[appcare] chat in another terminal with `make chat`; stop with Ctrl-C", flush=True)
    elif supervisor.keep_going():
        print("[appcare] the Rasa server did not answer within 300 s; still waiting (Ctrl-C stops)", flush=True)
    supervisor.wait()
    return supervisor.report_end()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shell", action="store_true", help="chat in this terminal with `rasa shell`")
    parser.add_argument("--no-desk", action="store_true")
    args = parser.parse_args(argv)
    quiet.install()
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    code = 1
    try:
        code = run(args, supervisor)
    finally:
        code = supervisor.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
