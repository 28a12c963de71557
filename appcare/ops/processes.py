"""Starting and stopping long-running child processes (servers, HAProxy, jobs): the one
place for it, used by `make run` (tools/run.py), the load test and its cluster, the
benchmark, the report simulator and the tests.

    proc = processes.start([sys.executable, "-m", "desk"], log=workdir / "desk.log", env=env)
    ...
    processes.wait_ready(f"{url}/health", [proc], timeout=60)
    ...
    processes.stop([proc], timeout=20)

:func:`start` makes each child, by default, the leader of its own process group
(``start_new_session``), so :func:`stop` reaches whatever the child started itself and
a Ctrl-C in the terminal does not hit it twice. :func:`wait_ready` polls a URL until the
server answers, and fails at once (with the end of its log) when the process ends first. :func:`stop` sends a signal (SIGTERM) to
each group, waits up to ``timeout`` seconds until nothing of the group runs any more,
then sends SIGKILL to what is left, and reaps the children. Short commands that run to
completion stay with :func:`subprocess.run`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Union

ROOT = Path(__file__).resolve().parents[2]

Log = Union[None, str, Path, IO[bytes]]


class Process(subprocess.Popen):
    """A :class:`subprocess.Popen` that knows its ``name``, its ``log`` file (when it
    has one) and whether it leads its own process group (``own_group``)."""

    def __init__(self, cmd: Sequence[str], *, name: str = "", log: Optional[Path] = None, own_group: bool = True,
                 **kwargs) -> None:
        super().__init__(cmd, start_new_session=own_group, **kwargs)
        self.name = name or Path(str(cmd[0])).name
        self.log = log
        self.own_group = own_group


def start(cmd: Sequence[str], *, name: str = "", log: Log = None, append: bool = False,
          env: Optional[Dict[str, str]] = None, cwd: Union[None, str, Path] = ROOT, new_group: bool = True,
          **popen) -> Process:
    """Starts ``cmd`` in ``cwd`` (the project root; None: ours) with ``env`` (None: ours).

    ``log``: a path receives stdout and stderr (truncated first, or appended to with
    ``append``; the parent's handle is closed right away), an open binary file is used as
    it is (the caller closes it), None leaves both to ``popen`` (default: this terminal).
    ``new_group``: the child leads its own process group (False: it stays in ours, e.g.
    ``rasa shell``, which reads this terminal). Other keyword arguments go to Popen
    (``stdout=subprocess.PIPE``, ``text=True``, ...)."""
    where = None if cwd is None else str(cwd)
    if log is None:
        return Process(cmd, name=name, own_group=new_group, cwd=where, env=env, **popen)
    if isinstance(log, (str, Path)):
        path = Path(log)
        with open(path, "ab" if append else "wb") as handle:
            return Process(cmd, name=name, log=path, own_group=new_group, cwd=where, env=env, stdout=handle,
                           stderr=subprocess.STDOUT, **popen)
    path = Path(log.name) if isinstance(getattr(log, "name", None), str) else None
    return Process(cmd, name=name, log=path, own_group=new_group, cwd=where, env=env, stdout=log,
                   stderr=subprocess.STDOUT, **popen)


def group_alive(pgid: int) -> bool:
    """True while any process of process group ``pgid`` runs (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (a zombie then still counts)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # fields after "(comm)": state ppid pgrp ...; comm itself may contain spaces
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _own_group(proc: subprocess.Popen) -> bool:
    return getattr(proc, "own_group", True)  # a plain Popen given to stop() leads its own group


def anything_left(proc: subprocess.Popen) -> bool:
    """The child (reaped when it has ended) or anything in its process group still runs."""
    return proc.poll() is None or (_own_group(proc) and group_alive(proc.pid))


def send(proc: subprocess.Popen, signum: int) -> None:
    """Sends ``signum`` to the child's process group (only to the child when it shares ours)."""
    try:
        if _own_group(proc):
            os.killpg(proc.pid, signum)
        elif proc.poll() is None:
            proc.send_signal(signum)
    except ProcessLookupError:
        pass


def stop(processes: Sequence[subprocess.Popen], timeout: float = 15, sig: int = signal.SIGTERM,
         on_kill: Optional[Callable[[subprocess.Popen], None]] = None) -> List[subprocess.Popen]:
    """Stops the children and everything in their process groups: ``sig`` (SIGTERM; e.g.
    SIGUSR1 for HAProxy's soft stop), up to ``timeout`` seconds, then SIGKILL (after
    ``on_kill(child)``, which may say so). Reaps the children; returns those that needed
    SIGKILL. Children that already ended (and left nothing) are skipped."""
    processes = list(processes)
    for proc in processes:
        if anything_left(proc):
            send(proc, sig)
    deadline = time.monotonic() + timeout
    while any(anything_left(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = [p for p in processes if anything_left(p)]
    for proc in killed:
        if on_kill is not None:
            on_kill(proc)
        send(proc, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(anything_left(p) for p in killed) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in processes:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 1)
        except subprocess.TimeoutExpired:  # only a process stuck in the kernel (state D) gets here
            pass
    return killed


class NotReady(RuntimeError):
    """A started server did not answer in time, or ended before it did (the message holds
    the end of its log)."""


def log_tail(proc: subprocess.Popen, chars: int = 3000) -> str:
    """The end of the child's log file ("" when it has none)."""
    path = getattr(proc, "log", None)
    if path is None or not Path(path).exists():
        return ""
    return Path(path).read_text(encoding="utf-8", errors="replace")[-chars:]


def wait_ready(url: str, procs: Sequence[subprocess.Popen], timeout: float,
               ok: Optional[Callable[[Any], bool]] = None, params: Optional[Dict[str, str]] = None,
               interval: float = 0.5) -> Any:
    """Polls ``GET url`` until ``ok(response)`` (default: status 200) and returns that
    response. Raises :class:`NotReady` at once when one of ``procs`` ends, or after
    ``timeout`` seconds, with the last answer seen and the end of the log."""
    import requests

    check = ok or (lambda response: response.status_code == 200)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        for proc in procs:
            if proc.poll() is not None:
                name = getattr(proc, "name", "") or "the server"
                raise NotReady(f"{name} exited with {proc.returncode} before {url} was ready:\n{log_tail(proc)}")
        try:
            response = requests.get(url, params=params, timeout=2)
            if check(response):
                return response
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            tails = "\n".join(log_tail(p) for p in procs)
            raise NotReady(f"{url} not ready after {timeout:.0f} s ({last}):\n{tails}")
        time.sleep(interval)  # poll interval of a bounded wait
