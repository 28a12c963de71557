"""`make run`'s supervisor (tools/run.py) with its real components: the action server,
the Rasa server with the trained model and the KCC desk run as real processes.

SIGTERM (systemd, a CI runner) and SIGHUP (the terminal was closed) stop every
component and everything in their process groups, not only Ctrl-C; a component that
dies stops the others and is named. Processes are read from /proc."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from appcare.ops import processes as child_processes
from appcare.plugins import live_model
from appcare.ports import free_port
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)"),
]


def process_table() -> Dict[int, Tuple[int, int, str, str]]:
    """pid -> (parent pid, process group, state, start time) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0], fields[19])
    return table


def children_of(pid: int) -> List[int]:
    return sorted(p for p, (ppid, _, state, _) in process_table().items() if ppid == pid and state != "Z")


def descendants(pid: int) -> Set[Tuple[int, str]]:
    """(pid, start time) of every process below ``pid`` and of every process in the
    process groups of its children (which is where the components run)."""
    table = process_table()
    found: Set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _, _, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    groups = {table[p][1] for p in found if p in table}
    found |= {p for p, (_, pgrp, _, _) in table.items() if pgrp in groups and p != pid}
    return {(p, table[p][3]) for p in found if p in table}


def still_running(processes: Set[Tuple[int, str]]) -> List[int]:
    table = process_table()
    return sorted(p for p, started in processes if p in table and table[p][3] == started and table[p][2] != "Z")


class RunningSupervisor:
    """``python -m tools.run`` in its own process group on free ports, with its own
    databases; its output goes to a file."""

    def __init__(self, workdir: Path) -> None:
        if live_model.served() is None:
            pytest.skip("no trained model in models/: run `make train` first")
        self.log_path = workdir / "run.log"
        self.rasa_port = free_port()
        endpoints = workdir / "endpoints.yml"
        endpoints.write_text(  # tools.run puts its action port into this URL
            "action_endpoint:\n  url: \"http://127.0.0.1:5055/webhook\"\n"
            f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {workdir}/tracker.db\n")
        env = {**os.environ, "ACTION_PORT": str(free_port()), "RASA_PORT": str(self.rasa_port),
               "DESK_PORT": str(free_port()), "APPCARE_DB_URL": f"sqlite:///{workdir}/appcare.db",
               "APPCARE_ENDPOINTS": str(endpoints), "TF_CPP_MIN_LOG_LEVEL": "2",
               "RASA_TELEMETRY_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
        env.pop("RASA_URL", None)
        self.log = open(self.log_path, "wb")
        self.proc = child_processes.start([sys.executable, "-m", "tools.run"], log=self.log, env=env, cwd=ROOT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.proc.poll() is None, f"tools.run ended early ({self.proc.returncode}):\n{self.output()[-3000:]}"
            time.sleep(0.5)  # poll interval of a bounded wait
        raise AssertionError(f"{what} not within {seconds} s:\n{self.output()[-3000:]}")

    def wait_for_components(self) -> List[int]:
        """Waits until the action server, the Rasa server and the desk run (Rasa may
        still be loading the model); returns their pids."""
        self.wait_until(lambda: len(children_of(self.proc.pid)) == 3, 300, "three components")
        return children_of(self.proc.pid)

    def close(self) -> None:
        """Leaves nothing behind, whatever the test did."""
        leftovers = descendants(self.proc.pid) if self.proc.poll() is None else set()
        for pid, _ in leftovers:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def supervisor(tmp_path):
    running = RunningSupervisor(tmp_path)
    yield running
    running.close()


def assert_all_gone(processes: Set[Tuple[int, str]], running: RunningSupervisor) -> None:
    deadline = time.monotonic() + 5  # the supervisor already waited; its grandchildren may just be reaped
    while still_running(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running(processes) == [], running.output()[-3000:]


def test_sigterm_when_ready_stops_every_component(supervisor):
    """The whole assistant up (the model loaded), then SIGTERM as systemd sends it."""
    supervisor.wait_until(lambda: "[appcare] ready:" in supervisor.output(), 600, "ready")
    components = supervisor.wait_for_components()
    processes = descendants(supervisor.proc.pid)
    assert {pid for pid, _ in processes} >= set(components)
    os.killpg(supervisor.proc.pid, signal.SIGTERM)
    assert supervisor.proc.wait(60) == -signal.SIGTERM  # ends by the signal it got: a shell shows 143
    assert_all_gone(processes, supervisor)
    assert "[appcare] stopped (SIGTERM)" in supervisor.output()
    assert "did not stop within" not in supervisor.output()  # all of them honour SIGTERM


def test_sighup_during_start_up_stops_every_component(supervisor):
    """The terminal closes while Rasa is still loading the model."""
    supervisor.wait_for_components()
    processes = descendants(supervisor.proc.pid)
    os.killpg(supervisor.proc.pid, signal.SIGHUP)
    assert supervisor.proc.wait(60) == -signal.SIGHUP
    assert_all_gone(processes, supervisor)
    assert "[appcare] stopped (SIGHUP)" in supervisor.output()


def test_a_component_that_dies_stops_the_others_and_is_named(supervisor):
    components = supervisor.wait_for_components()
    processes = descendants(supervisor.proc.pid)
    desk = next(pid for pid in components if "desk" in Path(f"/proc/{pid}/cmdline").read_text())
    os.killpg(desk, signal.SIGKILL)
    assert supervisor.proc.wait(60) == 1
    assert_all_gone(processes, supervisor)
    assert f"[appcare] desk (pid {desk}) was killed by SIGKILL; stopping the others" in supervisor.output()
