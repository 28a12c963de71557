"""Minimal async client of the WhatsApp Cloud API (Meta Graph API).

* ``POST {graph_url}/{version}/{phone_number_id}/messages`` for messages and
  read receipts (with typing indicator).
* A message send is retried (exponential backoff, ``Retry-After``) only where it
  surely did not reach Meta: the connection could not be made (refused, DNS), a
  timeout before any connection existed, HTTP 429, or a 4xx answer with one of
  Meta's throttling/transient codes. Where the request may have reached Meta (a
  timeout or a broken connection after it was sent, HTTP 5xx) it is never posted
  again here: :class:`GraphAPIError` has ``in_doubt`` set and the channel resolves
  it from Meta's status webhooks (``biz_opaque_callback_data``) or resends it once
  after a bounded wait (channels.whatsapp). Read receipts are idempotent and
  retried on every transient error. Other 4xx give up at once. Logs carry the HTTP
  status and Meta's error code, never message content, recipient numbers or the
  access token.
* Paces messages per recipient (default at most one per second).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any, AsyncIterator, Dict, Optional

import aiohttp

logger = logging.getLogger(__name__)

# Meta error codes worth retrying even when they come with HTTP 400.
RETRYABLE_CODES = {
    1,  # API Unknown
    2,  # API Service (temporary)
    4,  # API Too Many Calls
    80007,  # WABA rate limit
    130429,  # Cloud API throughput reached
    131000,  # Something went wrong
    131016,  # Service unavailable
    131056,  # (business, consumer) pair rate limit
    133004,  # Server temporarily unavailable
}
REENGAGEMENT_CODE = 131047  # more than 24 hours since the citizen's last message


async def _mark_connected(_session: Any, context: Any, _params: Any) -> None:
    """aiohttp trace hook: a connection to the Graph API exists for this request, so
    from here on the request may reach Meta."""
    ctx = getattr(context, "trace_request_ctx", None)
    if isinstance(ctx, dict):
        ctx["connected"] = True


class GraphAPIError(Exception):
    """A failed Graph API call. ``code`` is Meta's error code (if any)."""

    def __init__(
        self,
        status: Optional[int],
        code: Optional[int],
        retryable: bool,
        error_type: Optional[str] = None,
        fbtrace_id: Optional[str] = None,
        reason: Optional[str] = None,
        in_doubt: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.retryable = retryable
        # The request may have reached Meta (timeout after sending, broken
        # connection, 5xx): whether the citizen got the message is not known.
        self.in_doubt = in_doubt
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id
        self.reason = reason  # short, content-free ("timeout", "ClientConnectorError", ...)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"http={self.status}" if self.status else "network"]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.error_type:
            parts.append(f"type={self.error_type}")
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.fbtrace_id:
            parts.append(f"fbtrace_id={self.fbtrace_id}")
        if self.in_doubt:
            parts.append("result=unknown")
        return "Graph API error " + " ".join(parts)

    @property
    def short(self) -> str:
        """Value for the outbox ``error`` column."""
        if self.code is not None:
            return f"graph_{self.code}"
        return f"http_{self.status}" if self.status else (self.reason or "network")[:60]


class GraphAPIClient:
    def __init__(
        self,
        access_token: str,
        graph_url: str,
        api_version: str,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        send_interval: float = 1.0,
    ) -> None:
        self._token = access_token
        self.graph_url = graph_url.rstrip("/")
        self.api_version = api_version
        self.timeout = timeout
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.send_interval = send_interval
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None
        self._last_send: Dict[str, float] = {}
        self._pace_locks: Dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"GraphAPIClient(graph_url={self.graph_url!r}, api_version={self.api_version!r})"

    def messages_url(self, phone_number_id: str) -> str:
        return f"{self.graph_url}/{self.api_version}/{phone_number_id}/messages"

    async def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_create_end.append(_mark_connected)
            tracing.on_connection_reuseconn.append(_mark_connected)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Authorization": f"Bearer {self._token}"},
                trace_configs=[tracing],
            )
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(Exception):
                await self._session.close()
        self._session = None

    @contextlib.asynccontextmanager
    async def _paced(self, recipient: str) -> AsyncIterator[None]:
        if self.send_interval <= 0 or not recipient:
            yield
            return
        lock = self._pace_locks.get(recipient)
        if lock is None:
            lock = self._pace_locks[recipient] = asyncio.Lock()
        async with lock:
            wait = self._last_send.get(recipient, 0.0) + self.send_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._last_send[recipient] = time.monotonic()
        if len(self._last_send) > 2000:
            self._prune()

    def _prune(self) -> None:
        horizon = time.monotonic() - max(self.send_interval, 1.0) * 2
        for recipient, last in list(self._last_send.items()):
            lock = self._pace_locks.get(recipient)
            if last < horizon and (lock is None or not lock.locked()):
                self._last_send.pop(recipient, None)
                self._pace_locks.pop(recipient, None)

    async def send_message(self, phone_number_id: str, payload: Dict[str, Any]) -> Optional[str]:
        """Sends one message; returns its wamid. Raises :class:`GraphAPIError`
        (``in_doubt`` when the request may have reached Meta: never re-posted here)."""
        async with self._paced(str(payload.get("to") or payload.get("recipient") or "")):
            data = await self._post(self.messages_url(phone_number_id), payload, self.max_attempts, idempotent=False)
        messages = data.get("messages") if isinstance(data, dict) else None
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            return messages[0].get("id")
        return None

    async def mark_as_read(self, phone_number_id: str, wamid: str, typing_indicator: bool = True) -> bool:
        """Blue ticks (+ typing indicator). Best effort: two tries, never raises."""
        body: Dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        if typing_indicator:
            body["typing_indicator"] = {"type": "text"}
        try:
            await self._post(self.messages_url(phone_number_id), body, min(2, self.max_attempts), idempotent=True)
            return True
        except GraphAPIError as error:
            logger.info("WhatsApp mark-as-read failed: %s", error)
            return False

    def _backoff(self, attempt: int, retry_after: Optional[str]) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        delay *= random.uniform(0.8, 1.2)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.backoff_max))
            except ValueError:
                pass
        return delay

    async def _post(self, url: str, body: Dict[str, Any], attempts: int, idempotent: bool) -> Dict[str, Any]:
        """POSTs ``body``. ``idempotent`` (read receipts): every transient error is
        retried. Otherwise (messages) only errors where the request surely did not
        reach Meta are retried; the others raise at once with ``in_doubt``."""
        for attempt in range(1, attempts + 1):
            retry_after: Optional[str] = None
            ctx: Dict[str, Any] = {"connected": False}
            try:
                session = await self._get_session()
                async with session.post(url, json=body, trace_request_ctx=ctx) as response:
                    raw = await response.read()
                    data = _json_or_empty(raw)
                    if 200 <= response.status < 300:
                        return data
                    retry_after = response.headers.get("Retry-After")
                    error = _error_from_response(response.status, data)
            except asyncio.TimeoutError:
                error = GraphAPIError(None, None, True, reason="timeout", in_doubt=bool(ctx["connected"]))
            except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
                error = GraphAPIError(None, None, True, reason=type(exc).__name__)
            except aiohttp.ClientError as exc:  # e.g. disconnected after sending
                error = GraphAPIError(None, None, True, reason=type(exc).__name__, in_doubt=bool(ctx["connected"]))
            if idempotent:
                error.in_doubt = False
            elif error.status is not None and error.status >= 500:
                error.in_doubt = True  # Meta may have accepted it before failing
            if error.in_doubt:
                logger.warning("WhatsApp Graph API: result of a send unknown (%s); not posted again", error)
                raise error
            if not error.retryable or attempt >= attempts:
                if error.retryable:
                    logger.error("WhatsApp Graph API gave up after %d tries: %s", attempt, error)
                else:
                    logger.error("WhatsApp Graph API request rejected: %s", error)
                raise error
            delay = self._backoff(attempt, retry_after)
            logger.warning(
                "WhatsApp Graph API %s try %d/%d failed (%s), retrying in %.2fs",
                "read receipt" if idempotent else "send", attempt, attempts, error, delay,
            )
            await asyncio.sleep(delay)
        raise GraphAPIError(None, None, False, reason="no attempts")  # pragma: no cover


def _json_or_empty(raw: bytes) -> Dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _error_from_response(status: int, data: Dict[str, Any]) -> GraphAPIError:
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    code = error.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    retryable = status == 429 or status >= 500 or code in RETRYABLE_CODES
    error_type = error.get("type")
    return GraphAPIError(
        status,
        code,
        retryable,
        error_type=str(error_type)[:40] if error_type else None,
        fbtrace_id=str(error.get("fbtrace_id"))[:40] if error.get("fbtrace_id") else None,
    )
