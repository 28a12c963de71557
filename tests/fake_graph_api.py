"""A fake Meta Graph API (WhatsApp Cloud API) for tests: a real HTTP server on
127.0.0.1 (random port, own thread) that records every request and answers as
scripted per test.

    with FakeGraphAPI() as graph:
        graph.script(429, "ok")          # next message sends: 429, then 200
        ...
        graph.messages()                 # recorded message sends (no read receipts)

Script items for message sends (read receipts always succeed unless
``script_reads`` is used): ``"ok"`` (200 with a new wamid), ``429``, ``500``,
``400`` (code 100), ``131047`` (re-engagement, HTTP 400), ``"hang"`` (answers
only when the test ends), ``"accept_then_timeout"`` (Meta takes the message - it
counts as delivered and its status webhooks go out - but the HTTP answer never
comes in time), ``"swallow"`` (the request is read but never reaches "Meta": no
delivery, no status, no answer in time), or a tuple ``(http_status, meta_error_code)``.

Like Meta, it can report on every message it took with a signed status webhook
(``sent``, then ``delivered``) that echoes ``biz_opaque_callback_data``:
``graph.report_statuses_to(webhook_url, app_secret)``.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional

ERRORS = {
    429: (429, 4, "OAuthException", "(#4) Application request limit reached"),
    500: (500, 2, "OAuthException", "Service temporarily unavailable"),
    400: (400, 100, "OAuthException", "(#100) Invalid parameter"),
    131047: (400, 131047, "OAuthException", "(#131047) Re-engagement message"),
    190: (401, 190, "OAuthException", "Error validating access token"),
}


class FakeGraphAPI:
    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self._script: Deque[Any] = deque()
        self._read_script: Deque[Any] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._ids = itertools.count(1)
        self._status_url: Optional[str] = None
        self._status_secret = ""
        self.status_posts: List[int] = []  # HTTP status of each status webhook we posted
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = None
                is_read = isinstance(body, dict) and body.get("status") == "read"
                with fake._lock:
                    queue = fake._read_script if is_read else fake._script
                    action = queue.popleft() if queue else "ok"
                    record = {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "json": body,
                        "time": time.monotonic(),
                        "kind": "read" if is_read else "message",
                        "answer": action,
                    }
                    fake.requests.append(record)
                fake._answer(self, action, body, is_read, self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-graph-api", daemon=True)

    # ------------------------------------------------------------- control
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeGraphAPI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeGraphAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def script(self, *actions: Any) -> None:
        with self._lock:
            self._script.extend(actions)

    def script_reads(self, *actions: Any) -> None:
        with self._lock:
            self._read_script.extend(actions)

    def release_hanging(self) -> None:
        self._release.set()

    def report_statuses_to(self, webhook_url: Optional[str], app_secret: str = "") -> None:
        """Send Meta-style status webhooks for every message taken (None: stop)."""
        self._status_url, self._status_secret = webhook_url, app_secret

    def _report(self, wamid: str, body: Any, path: str) -> None:
        url = self._status_url
        if not url or not isinstance(body, dict):
            return
        import hashlib
        import hmac

        import requests

        from tests.support.cluster import pnid_of_path, status_payload

        def post() -> None:
            for status in ("sent", "delivered"):
                data = status_payload(wamid, str(body.get("to") or body.get("recipient") or ""), pnid_of_path(path), status,
                                      body.get("biz_opaque_callback_data"))
                sig = "sha256=" + hmac.new(self._status_secret.encode(), data, hashlib.sha256).hexdigest()
                try:
                    answer = requests.post(url, data=data, timeout=10, headers={
                        "Content-Type": "application/json", "X-Hub-Signature-256": sig}).status_code
                except requests.RequestException:
                    answer = 0
                with self._lock:
                    self.status_posts.append(answer)

        threading.Thread(target=post, name="fake-graph-status", daemon=True).start()

    # ------------------------------------------------------------ queries
    def messages(self, to: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._lock:
            found = [r for r in self.requests if r["kind"] == "message"]
        return [r for r in found if to is None or (r["json"] or {}).get("to") == to]

    def delivered(self, to: Optional[str] = None) -> List[Dict[str, Any]]:
        """Message sends that Meta took (answered with 200, or taken and then timed out)."""
        return [r for r in self.messages(to) if r["answer"] in ("ok", "accept_then_timeout")]

    def read_receipts(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["kind"] == "read"]

    def wait_for(self, predicate: Callable[["FakeGraphAPI"], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    # ------------------------------------------------------------ answers
    def _answer(self, handler: BaseHTTPRequestHandler, action: Any, body: Any, is_read: bool, path: str = "") -> None:
        if action == "hang":
            self._release.wait(timeout=60)
            action = "ok"
        if action in ("accept_then_timeout", "swallow"):
            if action == "accept_then_timeout" and not is_read:
                self._report(f"wamid.FAKE{next(self._ids):06d}", body, path)
            self._release.wait(timeout=5)  # longer than the client's timeout in tests
            handler.close_connection = True
            return
        if action == "ok":
            if is_read:
                self._send(handler, 200, {"success": True})
            else:
                to = (body or {}).get("to") if isinstance(body, dict) else None
                wamid = f"wamid.FAKE{next(self._ids):06d}"
                self._report(wamid, body, path)
                self._send(
                    handler,
                    200,
                    {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": wamid}]},
                )
            return
        if isinstance(action, tuple):
            status, code = action
            title = "scripted error"
            error_type = "OAuthException"
        else:
            status, code, error_type, title = ERRORS[int(action)]
        self._send(
            handler,
            status,
            {"error": {"message": title, "type": error_type, "code": code, "fbtrace_id": "AbCdEfGh123"}},
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


def main() -> None:
    """Run the fake Graph API by hand: prints its URL and every message it receives."""
    import json
    import time

    fake = FakeGraphAPI().start()
    print(f"fake Graph API on {fake.url}  (export WHATSAPP_GRAPH_URL={fake.url})", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            while seen < len(fake.requests):
                print(json.dumps(fake.requests[seen], ensure_ascii=False, default=str), flush=True)
                seen += 1
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
