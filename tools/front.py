"""The sticky front: one public webhook for Meta, several Rasa instances behind it.

    python -m tools.front --listen 0.0.0.0:8080 \\
        --instance rasa-1=http://10.0.0.11:5005 --instance rasa-2=http://10.0.0.12:5005 \\
        --actions-listen 127.0.0.1:5056 --action-server http://10.0.0.21:5055 --action-server http://10.0.0.22:5055

(or FRONT_LISTEN, FRONT_INSTANCES="rasa-1=http://...,rasa-2=http://...",
FRONT_ACTIONS_LISTEN, FRONT_ACTION_SERVERS, FRONT_SPOOL_DIR, FRONT_ADMIN_TOKEN).

Why: Rasa's Redis lock store serialises the turns of one conversation, but with
two instances two messages of one citizen can still be handled in the wrong order
or in parallel (Rasa OSS issue 9213). The front keeps every citizen on one
instance, so the channel's per-citizen queue (in PostgreSQL) keeps the order.

What it does with ``POST /webhooks/whatsapp/webhook``:

* reads the raw body and parses it only to find the senders (``messages[].from``,
  ``statuses[].recipient_id``); it verifies nothing itself: the body and all
  headers, including ``X-Hub-Signature-256``, reach the instance unchanged and
  the instance checks Meta's signature;
* picks the instance per sender by rendezvous hashing of the wa_id over the
  configured instances (stable; only the senders of a failed instance move);
* a POST with senders of several instances goes, unchanged, to each of those
  instances with ``X-Appcare-Route: <sender hashes>``; each instance takes only
  those senders (the signature still covers the whole body);
* an instance that is down, unhealthy (``/webhooks/whatsapp/health`` every
  second) or answers 5xx/times out is skipped for the next instance in that
  sender's order; duplicates that this causes are dropped by the shared inbox;
* when no instance takes the request (e.g. the database is down and every
  instance answers 503), the request is written to a spool directory and Meta
  gets 200 at once; the spool is replayed in order as soon as an instance takes
  it again (while the spool is not empty, new requests queue behind it).

Security (issue 16): the public listener (``--listen``) serves only Meta's webhook
(``POST`` and the verification ``GET`` of ``/webhooks/whatsapp/webhook``) and
``/health``. Rasa's HTTP API for the desk (sticky by conversation id for
``/conversations/<id>/...``), ``/metrics`` and the admin endpoints are on the
internal listener (``--internal-listen``, default 127.0.0.1:8081). A webhook body
is only spooled when its ``X-Hub-Signature-256`` is valid for
``WHATSAPP_APP_SECRET`` (without the secret nothing is spooled: Meta retries); a
spooled request that keeps failing while other requests get through (a "poison"
request) is set aside as ``.bad`` after :data:`POISON_FAILURES` tries, so it no
longer blocks that citizen's later messages, and ``.bad`` files are deleted after
``FRONT_SPOOL_BAD_DAYS`` (default 7). In production (``APPCARE_ENV=production``)
the front refuses to start without strong ``FRONT_ADMIN_TOKEN`` and
``WHATSAPP_APP_SECRET``.

With ``--actions-listen`` it also balances Rasa's calls to the action servers:
round robin, and a call that cannot reach any server is retried for
``--action-wait`` seconds, so an action server can be restarted without a
citizen noticing.

``GET /health`` on every listener, ``GET /metrics`` (Prometheus) on the internal
and action listeners; ``POST /front/instances/<name>/drain`` and ``/enable`` on the
internal listener take an instance out of rotation for an upgrade, with
``Authorization: Bearer $FRONT_ADMIN_TOKEN`` (without a token they are disabled).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, CONTENT_TYPE_LATEST

from appcare import secrets
from appcare.pii import conversation_hash

logger = logging.getLogger("appcare.front")

WEBHOOK_PATH = "/webhooks/whatsapp/webhook"
HEALTH_PATH = "/webhooks/whatsapp/health"
ROUTE_HEADER = "X-Appcare-Route"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length",
}
MAX_BODY = 3 * 1024 * 1024  # Meta: webhook payloads up to 3 MB (channels/config.py max_body_bytes)
POISON_FAILURES = 5  # failed replays, while other requests got through, before a spooled request is set aside
BAD_KEPT_SECONDS = float(os.environ.get("FRONT_SPOOL_BAD_DAYS", "7")) * 86400
MAX_API_BODY = 20 * 1024 * 1024


# ------------------------------------------------------------------------ metrics
class FrontMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("appcare_front_webhook_requests_total", "Webhook POSTs by outcome", ["outcome"], registry=r)
        self.forwards = Counter(
            "appcare_front_forwards_total", "Forwards to instances by instance and result", ["instance", "result"], registry=r
        )
        self.ack_seconds = Histogram(
            "appcare_front_ack_seconds", "Time until Meta got its answer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0), registry=r,
        )
        self.instance_up = Gauge("appcare_front_instance_up", "1 when the instance is healthy", ["instance"], registry=r)
        self.spool = Gauge("appcare_front_spool_requests", "Webhook requests waiting in the spool", registry=r)
        self.action_calls = Counter("appcare_front_action_calls_total", "Action server calls by result", ["result"], registry=r)
        self.action_retries = Counter("appcare_front_action_retries_total", "Action calls tried again", registry=r)
        self.errors = Counter("appcare_front_errors_total", "Errors in the front by place", ["where"], registry=r)


# ---------------------------------------------------------------------- instances
@dataclass
class Upstream:
    name: str
    url: str
    kind: str = "instance"
    healthy: bool = True  # optimistic until the first health check
    checked: bool = False
    drained: bool = False
    failures: int = 0
    last_change: float = field(default_factory=time.time)

    @property
    def usable(self) -> bool:
        return self.healthy and not self.drained


def rank(upstreams: List[Upstream], key: str) -> List[Upstream]:
    """Rendezvous (highest random weight) order of the instances for one sender."""
    def score(up: Upstream) -> int:
        return int.from_bytes(hashlib.sha256(f"{up.name}\x00{key}".encode("utf-8")).digest()[:8], "big")

    return sorted(upstreams, key=score, reverse=True)


def _items(value: Any) -> List[Any]:
    """The list in a webhook field, or nothing when a (malformed) body has another shape."""
    return value if isinstance(value, list) else []


def senders_of(payload: Any) -> List[str]:
    """wa_ids in a WhatsApp webhook payload (messages' senders, statuses' recipients).
    Any shape is accepted: what is not a list or an object is skipped, never fatal."""
    found: List[str] = []
    if not isinstance(payload, dict):
        return found
    for entry in _items(payload.get("entry")):
        if not isinstance(entry, dict):
            continue
        for change in _items(entry.get("changes")):
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for message in _items(value.get("messages")):
                # a citizen with a username may come without a number: its BSUID
                if isinstance(message, dict) and (message.get("from") or message.get("from_user_id")):
                    found.append(str(message.get("from") or message.get("from_user_id"))[:256])
            for status in _items(value.get("statuses")):
                if isinstance(status, dict) and (status.get("recipient_id") or status.get("recipient_user_id")):
                    found.append(str(status.get("recipient_id") or status.get("recipient_user_id"))[:256])
    seen = set()
    return [s for s in found if not (s in seen or seen.add(s))]


# -------------------------------------------------------------------------- spool
@dataclass
class SpoolEntry:
    path: Path
    keys: List[str]  # the senders in it (their order must be kept)
    state: str = "pending"  # inflight (first forward still running) | pending | delivering | done
    failures: int = 0  # failed replays while other requests were delivered (see Front._replay)
    delivered_mark: Optional[int] = None  # Front.delivered when this entry first failed


class Spool:
    """Webhook requests not (yet) taken by an instance, one fsync'ed file each
    (mode 0600), replayed in arrival order per sender."""

    def __init__(self, directory: Path, limit: int = 100_000) -> None:
        self.directory = directory
        self.limit = limit
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)
        self._seq = itertools.count()
        self.entries: List[SpoolEntry] = []
        self.keys: Dict[str, int] = {}
        self.purge_bad()
        for path in sorted(directory.glob("*.json")):
            try:
                keys = list(json.loads(path.read_text(encoding="utf-8")).get("keys") or [""])
            except (OSError, ValueError):
                path.rename(path.with_suffix(".bad"))
                continue
            self._index(SpoolEntry(path, keys))

    def __len__(self) -> int:
        return len(self.entries)

    def purge_bad(self, now: Optional[float] = None) -> int:
        """Deletes set-aside ``.bad`` files (they hold message bodies) older than
        ``FRONT_SPOOL_BAD_DAYS``; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.directory.glob("*.bad"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > BAD_KEPT_SECONDS:
                    path.unlink()
                    removed += 1
        return removed

    def set_aside(self, entry: "SpoolEntry") -> None:
        """Moves a request that keeps failing out of the queue (kept as ``.bad``)."""
        with contextlib.suppress(OSError):
            entry.path.rename(entry.path.with_suffix(".bad"))
        self.remove(entry)

    def _index(self, entry: SpoolEntry) -> None:
        self.entries.append(entry)
        for key in entry.keys:
            self.keys[key] = self.keys.get(key, 0) + 1

    def holds(self, keys: Iterable[str]) -> bool:
        return any(self.keys.get(k) for k in keys)

    def write(self, body: bytes, headers: Dict[str, str], route: Optional[str], keys: List[str]) -> Path:
        """Durable write (blocking: run it in an executor)."""
        if len(self.entries) >= self.limit:
            raise OSError("spool full")
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}"
        data = json.dumps({
            "v": 1, "spooled_at": time.time(), "headers": headers, "route": route, "keys": keys,
            "body": base64.b64encode(body).decode("ascii"),
        }).encode("utf-8")
        tmp = self.directory / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        target = self.directory / (name + ".json")
        os.replace(tmp, target)
        with contextlib.suppress(OSError):
            dirfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        return target

    def add(self, path: Path, keys: List[str]) -> SpoolEntry:
        entry = SpoolEntry(path, keys)
        self._index(entry)
        return entry

    def remove(self, entry: SpoolEntry) -> None:
        if entry.state == "done":
            return
        entry.state = "done"
        with contextlib.suppress(ValueError):
            self.entries.remove(entry)
        for key in entry.keys:
            left = self.keys.get(key, 0) - 1
            if left > 0:
                self.keys[key] = left
            else:
                self.keys.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()

    @staticmethod
    def load(path: Path) -> Dict[str, Any]:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["body"] = base64.b64decode(data["body"])
        return data


def groups_in_order(entries: List[SpoolEntry]) -> List[List[SpoolEntry]]:
    """Entries grouped so that two entries sharing a sender are in one group (in
    order); different groups can be replayed in parallel."""
    groups: List[List[SpoolEntry]] = []
    owner: Dict[str, int] = {}
    for entry in entries:
        found = next((owner[k] for k in entry.keys if k in owner), None)
        if found is None:
            found = len(groups)
            groups.append([])
        groups[found].append(entry)
        for key in entry.keys:
            owner[key] = found
    return groups


# -------------------------------------------------------------------------- front
class Front:
    def __init__(
        self,
        instances: List[Tuple[str, str]],
        spool_dir: Path,
        action_servers: Iterable[str] = (),
        health_interval: float = 1.0,
        forward_timeout: float = 2.0,
        action_wait: float = 30.0,
        admin_token: Optional[str] = None,
        ack_deadline: float = 0.5,
        app_secret: Optional[str] = None,
    ) -> None:
        if not instances:
            raise ValueError("at least one Rasa instance is needed")
        self.instances = [Upstream(name, url.rstrip("/")) for name, url in instances]
        self.actions = [Upstream(f"actions-{i + 1}", url.rstrip("/"), "action server") for i, url in enumerate(action_servers)]
        self.spool = Spool(spool_dir)
        self.health_interval = health_interval
        self.forward_timeout = forward_timeout
        self.action_wait = action_wait
        self.admin_token = admin_token
        self.app_secret = app_secret
        self.delivered = 0  # webhook requests an instance took (poison detection)
        self.metrics = FrontMetrics()
        self.session: Optional[aiohttp.ClientSession] = None
        self._tasks: List[asyncio.Task] = []
        self.ack_deadline = ack_deadline
        self._spool_wakeup = asyncio.Event()
        self._rr = itertools.count()
        self.metrics.spool.set(len(self.spool))

    # ------------------------------------------------------------ lifecycle
    async def start(self, _app: Any = None) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
            auto_decompress=False,
        )
        self._tasks = [
            asyncio.create_task(self._health_loop(self.instances, HEALTH_PATH)),
            asyncio.create_task(self._drain_spool_loop()),
        ]
        if self.actions:
            self._tasks.append(asyncio.create_task(self._health_loop(self.actions, "/health")))
        if len(self.spool):
            logger.warning("front: %d spooled webhook request(s) from an earlier run will be replayed", len(self.spool))
            self._spool_wakeup.set()

    async def stop(self, _app: Any = None) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.session is not None:
            await self.session.close()
            self.session = None

    # --------------------------------------------------------------- health
    async def _health_loop(self, upstreams: List[Upstream], path: str) -> None:
        while True:
            await asyncio.gather(*(self._check(up, path) for up in upstreams), return_exceptions=True)
            await asyncio.sleep(self.health_interval)

    async def _check(self, up: Upstream, path: str) -> None:
        assert self.session is not None
        try:
            async with self.session.get(up.url + path, timeout=aiohttp.ClientTimeout(total=3.0, sock_connect=1.0)) as resp:
                await resp.read()
                ok = resp.status == 200
        except aiohttp.ClientConnectorError:
            up.failures = 1  # nobody listening: down at once
            ok = False
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            ok = False
        if ok:
            up.failures = 0
        elif up.healthy and up.checked:
            # a busy instance may answer a health check slowly once: two misses in a row
            up.failures += 1
            if up.failures < 2:
                return
        self._set_health(up, ok, "health check")

    def _set_health(self, up: Upstream, ok: bool, why: str) -> None:
        first = not up.checked
        up.checked = True
        if ok != up.healthy or first:
            changed = ok != up.healthy
            up.healthy = ok
            up.last_change = time.time()
            if first and not changed and ok:
                logger.info("front: %s %s is up", up.kind, up.name)
            elif first:
                logger.info("front: %s %s is not up yet", up.kind, up.name)
            elif ok:
                logger.warning("front: %s %s is healthy again (%s)", up.kind, up.name, why)
            elif up.kind == "instance":
                logger.error("front: instance %s is unavailable (%s); its citizens go to the next instance", up.name, why)
            else:
                logger.error("front: action server %s is unavailable (%s)", up.name, why)
        if up in self.instances:
            self.metrics.instance_up.labels(up.name).set(1 if ok else 0)

    # -------------------------------------------------------------- webhook
    def candidates(self, key: str) -> List[Upstream]:
        ordered = [up for up in rank(self.instances, key) if not up.drained]
        healthy = [up for up in ordered if up.healthy]
        return healthy or ordered  # health may lag behind: try them all rather than none

    async def _forward(
        self, up: Upstream, method: str, path_qs: str, headers: Dict[str, str], body: bytes, timeout: float
    ) -> Tuple[int, Dict[str, str], bytes]:
        assert self.session is not None
        async with self.session.request(
            method, up.url + path_qs, data=body, headers=headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(0.5, timeout)),
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"}
            return resp.status, out, data

    async def deliver_webhook(
        self, key: str, body: bytes, headers: Dict[str, str], route: Optional[str]
    ) -> Optional[Tuple[int, bytes]]:
        """Tries the sender's instances in order. Returns (status, body) of the
        instance that took it (2xx) or refused it for good (4xx); None if none did."""
        send_headers = dict(headers)
        if route:
            send_headers[ROUTE_HEADER] = route
        for position, up in enumerate(self.candidates(key)):
            try:
                status, _, data = await self._forward(up, "POST", WEBHOOK_PATH, send_headers, body, self.forward_timeout)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.metrics.forwards.labels(up.name, "error").inc()
                self._set_health(up, False, type(exc).__name__)
                continue
            if status >= 500:
                self.metrics.forwards.labels(up.name, str(status)).inc()
                logger.warning("front: %s answered %d; trying the next instance", up.name, status)
                continue
            self.metrics.forwards.labels(up.name, "failover" if position else str(status)).inc()
            if status < 400:
                self.delivered += 1
            return status, data
        return None

    async def handle_webhook(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            return await self._handle_webhook(request)
        finally:
            self.metrics.ack_seconds.observe(time.monotonic() - started)

    async def _handle_webhook(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            self.metrics.requests.labels("too_large").inc()
            return web.Response(status=413, text="payload too large")
        try:
            # the whole body (``content.read(n)`` returns what happens to be buffered)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            body = b"x" * (MAX_BODY + 1)
        if len(body) > MAX_BODY:
            self.metrics.requests.labels("too_large").inc()
            return web.Response(status=413, text="payload too large")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop(ROUTE_HEADER, None)  # only the front sets it
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            payload = None  # the instance judges the body; the front only routes it
        senders = senders_of(payload)
        groups: Dict[str, List[str]] = {}
        for wa_id in senders:
            first = self.candidates(wa_id)
            groups.setdefault(first[0].name if first else "", []).append(wa_id)
        if len(groups) <= 1:
            parts: List[Tuple[List[str], Optional[str]]] = [(senders or [""], None)]
        else:
            parts = [(members, ",".join(conversation_hash(s) for s in members)) for members in groups.values()]
        results = await asyncio.gather(*(self._deliver_part(keys, route, body, headers) for keys, route in parts))
        refused = [r for r in results if r is not None and r[0] >= 400]
        if refused:  # 4xx: the instance judged the request itself (signature, JSON, size)
            self.metrics.requests.labels(f"refused_{refused[0][0]}").inc()
            return web.Response(status=refused[0][0], body=refused[0][1])
        if any(r is None for r in results):
            return web.json_response({"status": "queued"})
        self.metrics.requests.labels("forwarded" if len(parts) == 1 else "split").inc()
        if len(parts) == 1 and results[0] is not None:
            return web.Response(status=results[0][0], body=results[0][1], content_type="application/json")
        return web.json_response({"status": "ok", "parts": len(parts)})

    async def _deliver_part(
        self, keys: List[str], route: Optional[str], body: bytes, headers: Dict[str, str]
    ) -> Optional[Tuple[int, bytes]]:
        """Forwards one part; (status, body) when an instance answered in time,
        None when the part went to the spool (Meta gets 200 either way)."""
        if self.spool.holds(keys):  # earlier messages of these citizens wait: keep the order
            await self._spool_part(keys, route, body, headers, "behind earlier spooled messages")
            return None
        task = asyncio.ensure_future(self.deliver_webhook(keys[0], body, headers, route))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self.ack_deadline)
        except asyncio.TimeoutError:
            pass
        else:
            if result is not None:
                return result
            if await self._spool_part(keys, route, body, headers, "no instance took it") is None:
                self.metrics.requests.labels("unavailable").inc()
                raise web.HTTPServiceUnavailable(text="temporarily unavailable")  # Meta retries
            return None
        # The instance is slow: Meta must get its answer now. Keep a durable copy;
        # if the forward still succeeds, the copy is dropped, otherwise replayed.
        entry = await self._spool_part(keys, route, body, headers, None, state="inflight")
        if entry is not None:
            def finished(done: "asyncio.Future[Any]") -> None:
                result = None if done.cancelled() or done.exception() is not None else done.result()
                if entry.state != "inflight":
                    return
                if result is not None:
                    self.spool.remove(entry)
                    self.metrics.spool.set(len(self.spool))
                    self.metrics.requests.labels("late_forwarded").inc()
                else:
                    entry.state = "pending"
                self._spool_wakeup.set()

            if task.done():
                finished(task)
            else:
                task.add_done_callback(finished)
            return None
        return await task  # could not spool: wait for the instance after all

    async def _spool_part(
        self, keys: List[str], route: Optional[str], body: bytes, headers: Dict[str, str], why: Optional[str],
        state: str = "pending",
    ) -> Optional[SpoolEntry]:
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "x-hub-signature-256", "x-hub-signature", "user-agent")}
        signature = next((v for k, v in headers.items() if k.lower() == "x-hub-signature-256"), None)
        if not self.signed(body, signature):
            # Only Meta's requests may use our disk: without a valid signature, nothing is kept.
            self.metrics.errors.labels("spool_unsigned").inc()
            logger.warning("front: webhook request with a missing or wrong signature not spooled")
            return None
        try:
            path = await asyncio.get_running_loop().run_in_executor(None, self.spool.write, body, keep, route, keys)
        except OSError as exc:
            self.metrics.errors.labels("spool").inc()
            logger.error("front: cannot spool a webhook request (%s)", type(exc).__name__)
            return None
        was_empty = len(self.spool) == 0
        entry = self.spool.add(path, keys)
        entry.state = state
        self.metrics.spool.set(len(self.spool))
        self.metrics.requests.labels("spooled" if why else "spooled_slow").inc()
        if why and was_empty:
            logger.error("front: webhook request spooled (%s); acknowledged, replayed when an instance takes it", why)
        self._spool_wakeup.set()
        return entry

    def signed(self, body: bytes, signature: Optional[str]) -> bool:
        """True when ``signature`` is Meta's HMAC of ``body`` with the app secret."""
        if not self.app_secret or not signature or not signature.startswith("sha256="):
            return False
        expected = "sha256=" + hmac.new(self.app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        return secrets.same_secret(signature.strip().lower(), expected)

    async def _replay(self, entry: SpoolEntry) -> bool:
        """Replays one spooled request; False when no instance took it."""
        if entry.state == "done":
            return True
        try:
            item = await asyncio.get_running_loop().run_in_executor(None, Spool.load, entry.path)
        except FileNotFoundError:
            self.spool.remove(entry)
            return True
        except (OSError, ValueError, KeyError) as exc:
            logger.error("front: unreadable spool file skipped (%s)", type(exc).__name__)
            self.metrics.errors.labels("spool").inc()
            with contextlib.suppress(OSError):
                entry.path.rename(entry.path.with_suffix(".bad"))
            self.spool.remove(entry)
            return True
        entry.state = "delivering"
        result = await self.deliver_webhook(entry.keys[0], item["body"], item["headers"], item.get("route"))
        if result is None:
            entry.state = "pending"
            if entry.delivered_mark is None:
                entry.delivered_mark = self.delivered
            elif self.delivered > entry.delivered_mark:
                # Other requests got through since this one first failed: not an outage.
                entry.failures += 1
                if entry.failures >= POISON_FAILURES:
                    logger.error("front: a spooled request failed %d times while others were delivered; "
                                 "set aside (.bad) so later messages are not blocked", entry.failures)
                    self.metrics.errors.labels("spool_poison").inc()
                    self.spool.set_aside(entry)
                    return True
            return False
        if result[0] >= 400:
            logger.error("front: spooled request refused by the instance (HTTP %d); dropped", result[0])
            self.metrics.errors.labels("spool_refused").inc()
        entry.state = "pending"
        self.spool.remove(entry)
        return True

    async def _drain_spool_loop(self) -> None:
        backoff = 0.25
        delivered = 0
        limit = asyncio.Semaphore(16)
        last_purge = time.monotonic()
        while True:
            if not len(self.spool):
                if time.monotonic() - last_purge > 3600:
                    last_purge = time.monotonic()
                    await asyncio.get_running_loop().run_in_executor(None, self.spool.purge_bad)
                self._spool_wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._spool_wakeup.wait(), 5.0)
                continue
            batch = [e for e in self.spool.entries[:200] if e.state != "done"]

            async def replay_group(group: List[SpoolEntry]) -> Tuple[int, str]:
                done = 0
                async with limit:
                    for entry in group:
                        if entry.state == "inflight":
                            return done, "waiting"  # its first forward is still running
                        if entry.state == "done":
                            continue
                        if not await self._replay(entry):
                            return done, "failed"
                        done += 1
                return done, "ok"

            results = await asyncio.gather(*(replay_group(g) for g in groups_in_order(batch)))
            self.metrics.spool.set(len(self.spool))
            delivered += sum(n for n, _ in results)
            if not len(self.spool) and delivered:
                logger.warning("front: spool drained, %d request(s) delivered late", delivered)
                delivered = 0
            states = {state for _, state in results}
            if "failed" in states:
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            elif "waiting" in states:
                backoff = 0.25
                self._spool_wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._spool_wakeup.wait(), 0.2)
            else:
                backoff = 0.25

    # ----------------------------------------------------------- other paths
    async def handle_proxy(self, request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else b""
        if len(body) > MAX_API_BODY:
            return web.Response(status=413, text="payload too large")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop(ROUTE_HEADER, None)
        key = ""
        parts = request.path.split("/")
        if len(parts) > 2 and parts[1] == "conversations":
            key = parts[2]
        path_qs = request.rel_url.raw_path_qs if hasattr(request.rel_url, "raw_path_qs") else str(request.rel_url)
        if key:
            ups = self.candidates(key)
        else:
            ups = [u for u in self.instances if u.usable] or [u for u in self.instances if not u.drained]
            if ups:
                shift = next(self._rr) % len(ups)
                ups = ups[shift:] + ups[:shift]
        for up in ups:
            try:
                status, out, data = await self._forward(up, request.method, path_qs, headers, body, 300.0)
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                self._set_health(up, False, type(exc).__name__)
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                logger.error("front: %s failed on a proxied request (%s)", up.name, type(exc).__name__)
                return web.Response(status=502, text="bad gateway")
            return web.Response(status=status, body=data, headers=out)
        return web.Response(status=503, text="no instance available")

    # -------------------------------------------------------------- actions
    async def handle_action(self, request: web.Request) -> web.Response:
        body = await request.read() if request.can_read_body else b""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        path_qs = str(request.rel_url)
        deadline = time.monotonic() + self.action_wait
        tries = 0
        warned = False
        while True:
            ups = [u for u in self.actions if u.usable] or list(self.actions)
            start = next(self._rr)
            ups = ups[start % len(ups):] + ups[: start % len(ups)]
            for up in ups:
                tries += 1
                try:
                    status, out, data = await self._forward(up, request.method, path_qs, headers, body, 300.0)
                except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
                    # Not reached, or the server went away (restart): the action
                    # did not answer, so it is safe to ask another/the restarted one.
                    self._set_health(up, False, type(exc).__name__)
                    self.metrics.action_retries.inc()
                    continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    self.metrics.action_calls.labels("error").inc()
                    logger.error("front: action server %s failed (%s)", up.name, type(exc).__name__)
                    return web.Response(status=502, text="action server error")
                self.metrics.action_calls.labels("ok" if status < 500 else str(status)).inc()
                if warned:
                    logger.warning("front: action call succeeded after %d tries", tries)
                return web.Response(status=status, body=data, headers=out)
            if time.monotonic() >= deadline:
                self.metrics.action_calls.labels("unavailable").inc()
                logger.error("front: no action server reachable for %.0fs", self.action_wait)
                return web.Response(status=503, text="no action server available")
            if not warned:
                warned = True
                logger.warning("front: no action server reachable; holding the call up to %.0fs", self.action_wait)
            await asyncio.sleep(0.25)

    # --------------------------------------------------------------- admin
    def _admin_allowed(self, request: web.Request) -> bool:
        # No trust in 127.0.0.1: a same-host reverse proxy makes every request come from there.
        return secrets.same_secret(secrets.bearer_token(request.headers.get("Authorization")), self.admin_token)

    async def handle_admin(self, request: web.Request) -> web.Response:
        if not self.admin_token:
            return web.Response(status=403, text="admin API disabled: set FRONT_ADMIN_TOKEN")
        if not self._admin_allowed(request):
            return web.Response(status=403, text="forbidden")
        name, action = request.match_info["name"], request.match_info["action"]
        up = next((u for u in self.instances if u.name == name), None)
        if up is None:
            return web.json_response({"error": "unknown instance"}, status=404)
        up.drained = action == "drain"
        logger.warning("front: %s %s", name, "drained: no new traffic" if up.drained else "back in rotation")
        return web.json_response(self.status())

    def status(self) -> Dict[str, Any]:
        return {
            "instances": [{"name": u.name, "url": u.url, "healthy": u.healthy, "drained": u.drained} for u in self.instances],
            "action_servers": [{"name": u.name, "url": u.url, "healthy": u.healthy} for u in self.actions],
            "spooled": len(self.spool),
        }

    async def handle_health(self, _request: web.Request) -> web.Response:
        body = self.status()
        ok = any(u.usable for u in self.instances) or len(self.spool) < self.spool.limit
        body["status"] = "ok" if any(u.usable for u in self.instances) else ("spooling" if ok else "unavailable")
        return web.json_response(body, status=200 if ok else 503)

    async def handle_action_health(self, _request: web.Request) -> web.Response:
        ok = any(u.usable for u in self.actions)
        return web.json_response({"status": "ok" if ok else "unavailable", **self.status()}, status=200 if ok else 503)

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ------------------------------------------------------------------ apps
    def webhook_app(self) -> web.Application:
        """The public listener: Meta's webhook and a health check, nothing else."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(WEBHOOK_PATH, self.handle_webhook)
        app.router.add_get(WEBHOOK_PATH, self.handle_proxy)  # Meta's verification challenge
        app.router.add_get("/health", self.handle_health)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app

    def internal_app(self) -> web.Application:
        """The internal listener: Rasa's HTTP API for the desk, metrics, admin."""
        app = web.Application(client_max_size=MAX_API_BODY)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_post(r"/front/instances/{name}/{action:drain|enable}", self.handle_admin)
        app.router.add_route("*", "/{tail:.*}", self.handle_proxy)
        return app

    def actions_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_API_BODY)
        app.router.add_get("/health", self.handle_action_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_route("*", "/{tail:.*}", self.handle_action)
        return app


# ---------------------------------------------------------------------------- CLI
def _hostport(value: str) -> Tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def parse_instances(values: Iterable[str]) -> List[Tuple[str, str]]:
    result = []
    for i, value in enumerate(v for item in values for v in item.split(",") if v.strip()):
        name, sep, url = value.strip().partition("=")
        if not sep:
            name, url = f"rasa-{i + 1}", value.strip()
        result.append((name.strip(), url.strip()))
    return result


async def serve(args: argparse.Namespace) -> None:
    front = Front(
        parse_instances(args.instance or [os.environ.get("FRONT_INSTANCES", "")]),
        Path(args.spool_dir),
        [u for item in (args.action_server or [os.environ.get("FRONT_ACTION_SERVERS", "")]) for u in item.split(",") if u.strip()],
        health_interval=args.health_interval,
        forward_timeout=args.forward_timeout,
        action_wait=args.action_wait,
        admin_token=os.environ.get("FRONT_ADMIN_TOKEN") or None,
        ack_deadline=args.ack_deadline,
        app_secret=os.environ.get("WHATSAPP_APP_SECRET") or None,
    )
    runners = []
    webhook_runner = web.AppRunner(front.webhook_app(), access_log=None)
    await webhook_runner.setup()
    host, port = _hostport(args.listen)
    await web.TCPSite(webhook_runner, host, port, backlog=512).start()
    runners.append(webhook_runner)
    logger.info("front: webhook on %s:%d -> %s", host, port, ", ".join(f"{u.name}={u.url}" for u in front.instances))
    internal_runner = web.AppRunner(front.internal_app(), access_log=None)
    await internal_runner.setup()
    ihost, iport = _hostport(args.internal_listen)
    await web.TCPSite(internal_runner, ihost, iport, backlog=512).start()
    runners.append(internal_runner)
    logger.info("front: internal API (desk, metrics, admin) on %s:%d", ihost, iport)
    if not front.app_secret:
        logger.warning("front: WHATSAPP_APP_SECRET not set: webhooks are not spooled during an outage (Meta retries)")
    if args.actions_listen and front.actions:
        actions_runner = web.AppRunner(front.actions_app(), access_log=None)
        await actions_runner.setup()
        ahost, aport = _hostport(args.actions_listen)
        await web.TCPSite(actions_runner, ahost, aport, backlog=512).start()
        runners.append(actions_runner)
        logger.info("front: action calls on %s:%d -> %s", ahost, aport, ", ".join(u.url for u in front.actions))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("front: stopping")
    for runner in reversed(runners):
        await runner.cleanup()


def main(argv: Optional[List[str]] = None) -> int:
    from appcare import logging_setup

    parser = argparse.ArgumentParser(prog="python -m tools.front", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=os.environ.get("FRONT_LISTEN", "127.0.0.1:8080"))
    parser.add_argument("--instance", action="append", help="name=url of a Rasa instance (repeat)")
    parser.add_argument("--internal-listen", default=os.environ.get("FRONT_INTERNAL_LISTEN", "127.0.0.1:8081"),
                        help="Rasa's HTTP API for the desk, /metrics, admin (never public)")
    parser.add_argument("--actions-listen", default=os.environ.get("FRONT_ACTIONS_LISTEN"))
    parser.add_argument("--action-server", action="append", help="url of an action server (repeat)")
    parser.add_argument("--spool-dir", default=os.environ.get("FRONT_SPOOL_DIR", "var/front-spool"))
    parser.add_argument("--health-interval", type=float, default=float(os.environ.get("FRONT_HEALTH_INTERVAL", "1.0")))
    parser.add_argument("--forward-timeout", type=float, default=float(os.environ.get("FRONT_FORWARD_TIMEOUT", "2.0")))
    parser.add_argument("--action-wait", type=float, default=float(os.environ.get("FRONT_ACTION_WAIT", "30")))
    parser.add_argument("--ack-deadline", type=float, default=float(os.environ.get("FRONT_ACK_DEADLINE", "0.5")),
                        help="answer Meta after this long at the latest (spooling the request)")
    args = parser.parse_args(argv)
    logging_setup.configure(os.environ.get("APPCARE_COMPONENT") or "front")
    try:
        secrets.check_env("front", ["FRONT_ADMIN_TOKEN", "WHATSAPP_APP_SECRET"])
    except secrets.SecretError as exc:
        print(f"front: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args))
    except ValueError as exc:
        print(f"front: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
