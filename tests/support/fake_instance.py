"""A stand-in for a Rasa instance or an action server behind HAProxy: a real HTTP
server on 127.0.0.1 that records what it accepted and answers as scripted."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Tuple


class FakeInstance:
    """``health`` answers GETs (health checks), ``status`` answers POSTs; ``hold``
    makes POSTs wait until it is set (a request in progress)."""

    def __init__(self, name: str, status: int = 200) -> None:
        self.name = name
        self.status = status
        self.health = 200
        self.hold = threading.Event()
        self.hold.set()
        self.received: List[Tuple[str, Dict[str, str], bytes]] = []
        self.in_progress = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith(("/webhooks/whatsapp/health", "/health")):
                    self._answer(fake.health, b'{"status":"ok"}')
                    return
                with fake.lock:
                    fake.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
                self._answer(fake.status, f'{{"instance":"{fake.name}"}}'.encode())

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, raw))
                    fake.in_progress += 1
                try:
                    fake.hold.wait(60)
                    self._answer(fake.status, f'{{"instance":"{fake.name}"}}'.encode())
                finally:
                    with fake.lock:
                        fake.in_progress -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # health checks and closed keep-alive connections reset; nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def posts(self) -> int:
        with self.lock:
            return sum(1 for path, _h, _b in self.received if path.startswith(("/webhooks", "/webhook")))

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> str:
    """An address where nothing listens (a crashed instance)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
