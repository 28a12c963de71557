"""HAProxy with deploy/haproxy.cfg as a local process, and its runtime API.

The load test and the production tests start exactly the production configuration
(deploy/haproxy.cfg); only the addresses, which that file reads from the environment,
are this run's own. Debian's ``haproxy`` package is installed with apt-get when it is
missing (tools/debian.py).

The runtime API is what an operator uses for a zero-downtime upgrade (docs/production.md):

    echo "set server rasa/rasa-1 state drain" | socat stdio unix-connect:/run/haproxy/appcare.sock
"""
from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from appcare.ops import processes
from tools import debian

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "haproxy.cfg"
BINARY = "/usr/sbin/haproxy"


def ensure_installed() -> str:
    debian.ensure({BINARY: "haproxy"})
    return BINARY


class HAProxy:
    """One HAProxy master process running deploy/haproxy.cfg with ``addresses``
    (the ``APPCARE_*`` variables the file reads)."""

    def __init__(self, addresses: Dict[str, str], socket_path: Path, log_path: Path) -> None:
        socket_path = socket_path.resolve()  # HAProxy takes absolute socket paths only
        self.addresses = dict(addresses, APPCARE_HAPROXY_SOCKET=str(socket_path))
        self.socket_path = socket_path
        self.log_path = log_path
        self.popen: Optional[subprocess.Popen] = None

    def env(self) -> Dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("APPCARE_")}, **self.addresses}

    def check(self) -> None:
        """Validates the configuration (``haproxy -c``); raises with HAProxy's message."""
        done = subprocess.run([ensure_installed(), "-c", "-f", str(CONFIG)], env=self.env(),
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/haproxy.cfg is invalid: {(done.stdout + done.stderr).strip()[-1500:]}")

    def start(self) -> "HAProxy":
        binary = ensure_installed()
        self.check()
        if self.socket_path.exists():
            self.socket_path.unlink()
        # -W: master-worker, -db: stay in the foreground (the way systemd and containers run it)
        self.popen = processes.start([binary, "-W", "-db", "-f", str(CONFIG)], name="haproxy", log=self.log_path,
                                     append=True, env=self.env())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"haproxy exited at start-up:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            if self.socket_path.exists():
                try:
                    self.runtime("show info")
                    return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("haproxy did not open its runtime socket in 20 s")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is not None:  # SIGUSR1: soft stop, running requests finish; SIGKILL after 15 s
            processes.stop([self.popen], timeout=15, sig=signal.SIGUSR1)

    # ------------------------------------------------------------- runtime API
    def runtime(self, command: str, timeout: float = 5.0) -> str:
        """Sends one command to the runtime API (the stats socket); returns the answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``state``: ready, drain or maint."""
        answer = self.runtime(f"set server {backend}/{server} state {state}").strip()
        if answer:
            raise RuntimeError(f"haproxy refused 'set server {backend}/{server} state {state}': {answer}")

    def stats(self) -> List[Dict[str, str]]:
        text = self.runtime("show stat").lstrip("# ")
        return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]

    def server(self, backend: str, server: str) -> Dict[str, str]:
        for row in self.stats():
            if row["pxname"] == backend and row["svname"] == server:
                return row
        raise KeyError(f"{backend}/{server}")

    def wait_status(self, backend: str, server: str, prefix: str, seconds: float) -> None:
        """Waits until the server's status starts with ``prefix`` (UP, DRAIN, DOWN, MAINT)."""
        deadline = time.monotonic() + seconds
        status = "?"
        while time.monotonic() < deadline:
            status = self.server(backend, server)["status"]
            if status.startswith(prefix):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{backend}/{server} is {status}, not {prefix}, after {seconds:.0f} s")

    def wait_idle(self, backend: str, server: str, seconds: float) -> float:
        """Waits until no request of this server is running (after a drain); returns the wait."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if int(self.server(backend, server).get("scur") or 0) == 0:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"{backend}/{server} still has requests after {seconds:.0f} s")
