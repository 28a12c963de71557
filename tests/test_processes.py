"""appcare.ops.processes: the one helper that starts and stops servers and jobs."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from appcare.ops import processes
from tests.support.waiting import wait_for_state

# A child that starts a grandchild ignoring SIGTERM, writes both pids, then waits.
FAMILY = r"""
import os, signal, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
    stdout=subprocess.PIPE)
grandchild.stdout.readline()
print("child", os.getpid(), "grandchild", grandchild.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_stop_ends_the_whole_group_and_reports_what_needed_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    proc = processes.start([sys.executable, "-c", FAMILY], name="family", log=log, cwd=tmp_path)
    assert proc.name == "family" and proc.log == log and proc.own_group
    wait_for_state("both processes started", lambda: "grandchild" in log.read_text(), timeout=30)
    grandchild = int(log.read_text().split()[-1])
    assert os.getpgid(grandchild) == proc.pid  # the grandchild is in the child's group

    killed = processes.stop([proc], timeout=1)

    assert killed == [proc]  # the grandchild ignored SIGTERM: the group needed SIGKILL
    assert proc.returncode == -signal.SIGTERM
    wait_for_state("the grandchild gone", lambda: not _alive(grandchild), timeout=10)
    assert not processes.anything_left(proc)


def test_a_child_that_ends_on_sigterm_is_not_killed_and_the_log_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("earlier run\n")
    proc = processes.start([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(600)"],
                           log=log, append=True)
    wait_for_state("the child up", lambda: "up" in log.read_text(), timeout=30)
    assert processes.stop([proc], timeout=20) == []  # SIGTERM was enough
    assert proc.returncode == -signal.SIGTERM
    assert log.read_text().splitlines() == ["earlier run", "up"]


def test_stopping_a_child_that_already_ended_is_harmless(tmp_path: Path) -> None:
    proc = processes.start([sys.executable, "-c", "pass"], log=tmp_path / "quick.log")
    proc.wait(timeout=30)
    assert processes.stop([proc]) == []
    assert proc.returncode == 0


def test_wait_ready_returns_once_the_server_answers(tmp_path: Path) -> None:
    from appcare.ports import free_port

    port = free_port()
    (tmp_path / "health").write_text("ok")
    proc = processes.start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                            "--directory", str(tmp_path)], log=tmp_path / "server.log")
    try:
        response = processes.wait_ready(f"http://127.0.0.1:{port}/health", [proc], timeout=60)
        assert response.text == "ok"
    finally:
        processes.stop([proc], timeout=10)


def test_wait_ready_fails_at_once_with_the_log_when_the_server_ends(tmp_path: Path) -> None:
    import pytest

    from appcare.ports import free_port

    proc = processes.start([sys.executable, "-c", "import sys; print('port already in use', flush=True); sys.exit(3)"],
                           name="broken", log=tmp_path / "broken.log")
    with pytest.raises(processes.NotReady, match=r"(?s)broken exited with 3.*port already in use"):
        processes.wait_ready(f"http://127.0.0.1:{free_port()}/health", [proc], timeout=600)
