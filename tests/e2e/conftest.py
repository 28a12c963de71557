"""Fixtures for the KCC desk end-to-end tests: a headless Chromium (never skipped:
if it cannot be had the test fails with the reason), background processes with
their logs, and helpers to wait for HTTP servers."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from browser import BrowserUnavailable, start_browser, stop_browser

from appcare.ops import processes as child_processes

E2E = Path(__file__).resolve().parent
TESTS = E2E.parent
ROOT = TESTS.parent


class Processes:
    """Starts background processes with logs in a temp dir; stops them all (by pid)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: List[child_processes.Process] = []
        self.logs: Dict[str, Path] = {}

    def start(self, name: str, cmd: List[str], env: Dict[str, str], cwd: Path = ROOT) -> child_processes.Process:
        log = self.log_dir / f"{name}.log"
        self.logs[name] = log
        proc = child_processes.start(cmd, name=name, log=log, env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def tail(self, name: str, chars: int = 3000) -> str:
        log = self.logs.get(name)
        if not log or not log.exists():
            return ""
        return log.read_text(errors="replace")[-chars:]

    def wait_http(self, name: str, url: str, timeout: float, ok=lambda r: r.status_code < 500) -> None:
        proc = [p for p in self.procs if p.name == name][-1]
        try:
            child_processes.wait_ready(url, [proc], timeout, ok=ok, interval=0.3)
        except child_processes.NotReady as exc:
            pytest.fail(str(exc), pytrace=False)

    def stop_all(self) -> None:
        # each in its own session: only what it started (SIGTERM, then SIGKILL after 15 s)
        child_processes.stop(list(reversed(self.procs)), timeout=15)


@pytest.fixture
def processes(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = Processes(log_dir)
    yield procs
    procs.stop_all()


@pytest.fixture
def browser(tmp_path):
    try:
        driver = start_browser(str(tmp_path / "chrome-profile"))
    except BrowserUnavailable as exc:
        pytest.fail(f"headless Chromium is required for the desk e2e tests: {exc}", pytrace=False)
    yield driver
    stop_browser(driver)
