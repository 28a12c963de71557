"""``WhatsAppInput``, the channel as Rasa loads it (``channels.whatsapp.WhatsAppInput``):
its Sanic routes (health, metrics, webhook verification and the webhook itself),
reading and authenticating a webhook body, and starting the service (also when the
inbox database comes only after Rasa)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage

from appcare.ops import logging_setup
from appcare.ops import metrics as appcare_metrics
from appcare import secrets
from channels.config import WhatsAppConfig
from channels.webhook_parser import WebhookPayloadError, parse_webhook
from channels.whatsapp.common import CHANNEL_NAME, _is_outage, _where, logger
from channels.whatsapp.output import WhatsAppOutput
from channels.whatsapp.service import WhatsAppService
from channels.whatsapp.settings import ScaleSettings

DB_RETRY_SECONDS = 5.0  # inbox database down at start-up: try again this often
_MAX_CHALLENGE = 512
# An over-size webhook body is still read this far (hashed, never kept) to tell
# whether Meta signed it: then the limit is too low for real traffic (issue 16).
SIGNED_OVERSIZE_CHECK = 8 * 1024 * 1024
_MAX_INT_DIGITS = 4000  # a longer JSON integer is no field we use (Python refuses > 4300 digits)


class _BodyDigest:
    """HMAC-SHA256 and size of a request body as it streams in."""

    def __init__(self, secret: str) -> None:
        self.mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.mac.update(chunk)
        self.size += len(chunk)

    def matches(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("sha256="):
            return False
        return hmac.compare_digest(self.mac.hexdigest().encode("ascii"),
                                   header[len("sha256="):].strip().lower().encode("utf-8"))


async def _read_limited(request: Request, limit: int, digest: Optional[_BodyDigest] = None) -> Optional[bytes]:
    """Reads a streamed request body; None as soon as it exceeds ``limit`` bytes
    (a huge body is never buffered completely). ``digest`` sees every byte read."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    if request.stream is None:  # body already read (non-streaming use)
        body = request.body or b""
        if digest is not None:
            digest.update(body)
        return body if len(body) <= limit else None
    chunks: List[bytes] = []
    size = 0
    async for chunk in request.stream:
        if digest is not None:
            digest.update(chunk)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _oversize_signed(request: Request, digest: _BodyDigest, cap: int) -> Optional[bool]:
    """Whether a body refused as too large carries Meta's signature: the rest of it is
    read into ``digest`` (never kept). False without a signature header; None when
    it is larger than ``cap`` (not checked)."""
    header = request.headers.get("x-hub-signature-256")
    if not header:
        return False
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        return None
    if request.stream is not None:
        async for chunk in request.stream:
            digest.update(chunk)
            if digest.size > cap:
                return None
    return digest.matches(header)


def _json_int(text: str) -> Optional[int]:
    return int(text) if len(text) <= _MAX_INT_DIGITS else None


def verify_signature(app_secret: str, body: bytes, header: Optional[str]) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header[len("sha256=") :].strip().lower().encode("utf-8"))


class WhatsAppInput(InputChannel):
    """WhatsApp Cloud API input channel (``channels.whatsapp.WhatsAppInput``)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(WhatsAppConfig.load(credentials), ScaleSettings.load(credentials))

    def __init__(self, config: Optional[WhatsAppConfig] = None, scale: Optional[ScaleSettings] = None) -> None:
        self.config = config or WhatsAppConfig.load()
        self.scale = scale or ScaleSettings.load()
        self.service: Optional[WhatsAppService] = None
        self.unavailable_reason: Optional[str] = None
        self._retry_task: Optional[asyncio.Task] = None
        if secrets.production() or self.config.configured:
            # Raises SecretError in production (APPCARE_ENV=production): no instance with weak secrets.
            secrets.check("WhatsApp channel", {
                "WHATSAPP_APP_SECRET": self.config.app_secret,
                "WHATSAPP_VERIFY_TOKEN": self.config.verify_token,
                "WHATSAPP_ACCESS_TOKEN": self.config.access_token,
                **({"RASA_JWT_SECRET": os.environ.get("RASA_JWT_SECRET")} if secrets.production() else {}),
            })
            if secrets.production():
                secrets.pseudonym_key()  # raises without APPCARE_PSEUDONYM_KEY
        if not self.config.configured:
            self.unavailable_reason = "not configured"
            logger.warning("WhatsApp channel not configured (set %s)", ", ".join(self.config.missing))
            return
        try:
            self.service = WhatsAppService(self.config, self.scale)
        except Exception as exc:  # noqa: BLE001 - never keep Rasa from starting
            self.unavailable_reason = "database unavailable"
            logger.error("WhatsApp channel waiting: inbox database unavailable (%s); retrying every %.0f s",
                         _where(exc), DB_RETRY_SECONDS)

    async def _connect_later(self, app: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """The inbox database was unavailable when Rasa started: keep trying, then start
        the channel (Meta retries webhooks that got a 503 meanwhile)."""
        loop = asyncio.get_running_loop()
        while self.service is None:
            await asyncio.sleep(DB_RETRY_SECONDS)
            try:
                service = await loop.run_in_executor(None, WhatsAppService, self.config, self.scale)
            except Exception as exc:  # noqa: BLE001
                logger.debug("WhatsApp: inbox database still unavailable (%s)", _where(exc))
                continue
            self.service, self.unavailable_reason = service, None
            logger.warning("WhatsApp: inbox database reachable; channel started")
            await service.start(app, on_new_message)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WhatsAppOutput(self.service) if self.service else None

    def get_metadata(self, request: Request) -> Optional[Dict[Text, Any]]:
        """Per-message metadata is built by :func:`message_metadata`; this is the
        request-level part only."""
        return {"channel": CHANNEL_NAME}

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("whatsapp_webhook", "channels.whatsapp")  # its name before the split
        config = self.config
        logging_setup.adopt_sanic_loggers()  # no-op unless appcare logging is configured

        @bp.route("/health", methods=["GET"])
        async def health_check(request: Request) -> HTTPResponse:
            """200 only when this instance can take messages: channel configured,
            inbox database reachable and a model loaded (HAProxy's health check, probes)."""
            service = self.service
            if service is None:
                return response.json({"status": "unavailable", "reason": self.unavailable_reason}, status=503)
            body: Dict[str, Any] = {
                "status": "ok",
                "instance": self.scale.instance_id,
                "active_senders": len(service._workers),
            }
            try:
                body["open_messages"] = await asyncio.wait_for(service.store.open_count(), 3.0)
            except Exception:  # noqa: BLE001
                body.update(status="degraded", database="unavailable")
                return response.json(body, status=503)
            ctx = getattr(request.app, "ctx", None)
            agent = getattr(ctx, "agent", None) if ctx is not None else None
            if ctx is not None and hasattr(ctx, "agent"):
                is_ready = getattr(agent, "is_ready", None)
                if agent is None or (is_ready is not None and not is_ready()):
                    body.update(status="starting", model="not loaded")
                    return response.json(body, status=503)
            return response.json(body)

        @bp.route("/metrics", methods=["GET"])
        async def metrics(_: Request) -> HTTPResponse:
            service = self.service
            if service is not None:
                try:
                    appcare_metrics.WA_OPEN.set(await asyncio.wait_for(service.store.open_count(), 3.0))
                except Exception:  # noqa: BLE001
                    pass
            body, content_type = appcare_metrics.render()
            return response.raw(body, content_type=content_type)

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            service = self.service
            if service is None:
                return response.json({"status": "unavailable", "reason": self.unavailable_reason})
            try:
                open_messages = await service.store.open_count()
            except Exception:  # noqa: BLE001
                return response.json({"status": "degraded", "reason": "database"}, status=503)
            return response.json({"status": "ok", "open_messages": open_messages})

        @bp.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            if self.service is None:
                return response.text("WhatsApp channel not configured", status=503)
            mode = request.args.get("hub.mode")
            token = request.args.get("hub.verify_token") or ""
            challenge = request.args.get("hub.challenge") or ""
            if (
                mode == "subscribe"
                and hmac.compare_digest(token.encode("utf-8"), (config.verify_token or "").encode("utf-8"))
                and 0 < len(challenge) <= _MAX_CHALLENGE
            ):
                logger.info("WhatsApp: webhook verified")
                return response.text(challenge)
            logger.warning("WhatsApp: webhook verification refused (wrong mode or verify token)")
            return response.text("forbidden", status=403)

        @bp.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            service = self.service
            if service is None:
                return response.text(f"WhatsApp channel unavailable ({self.unavailable_reason})", status=503)
            try:
                return await self._receive(request, service)
            except Exception as exc:  # noqa: BLE001 - never a 500 with a trace
                appcare_metrics.WA_ERRORS.labels("webhook").inc()
                logger.error("WhatsApp: webhook failed (%s); not stored, Meta will retry", _where(exc))
                return response.text("temporarily unavailable", status=503)

        if self.config.configured:

            @bp.listener("after_server_start")
            async def start(app: Any, _loop: Any) -> None:
                logging_setup.adopt_sanic_loggers()
                if self.service is not None:
                    await self.service.start(app, on_new_message)
                else:
                    self._retry_task = asyncio.get_running_loop().create_task(self._connect_later(app, on_new_message))

            @bp.listener("before_server_stop")
            async def stop(_app: Any, _loop: Any) -> None:
                if self._retry_task is not None:
                    self._retry_task.cancel()
                if self.service is not None:
                    await self.service.stop()

        return bp

    async def _receive(self, request: Request, service: WhatsAppService) -> HTTPResponse:
        config = self.config
        digest = _BodyDigest(config.app_secret or "")
        body = await _read_limited(request, config.max_body_bytes, digest)
        if body is None:
            if await _oversize_signed(request, digest, max(SIGNED_OVERSIZE_CHECK, config.max_body_bytes)):
                # Meta sent it and will redeliver it for days: our limit is too low.
                appcare_metrics.WA_ERRORS.labels("webhook_too_large").inc()
                logger.error(
                    "WhatsApp: SIGNED webhook body of %d bytes is larger than max_body_bytes=%d: refused (413), "
                    "Meta will retry it; raise max_body_bytes (and the proxy's body limit)",
                    digest.size, config.max_body_bytes,
                )
            else:
                logger.warning("WhatsApp: webhook body larger than %d bytes, refused", config.max_body_bytes)
            return response.text("payload too large", status=413)
        if not verify_signature(config.app_secret or "", body, request.headers.get("x-hub-signature-256")):
            logger.warning("WhatsApp: webhook signature missing or invalid, refused")
            return response.text("invalid signature", status=401)
        # Signed by Meta from here on: anything but an outage of our own is answered
        # 200 (a 4xx/5xx makes Meta redeliver the same body for days, in vain).
        try:
            payload = json.loads(body.decode("utf-8"), parse_int=_json_int)
        except RecursionError:
            logger.warning("WhatsApp: webhook ignored: JSON nested too deeply")
            return response.json({"status": "ignored"})
        except (UnicodeDecodeError, ValueError):
            logger.warning("WhatsApp: webhook body is not valid JSON, refused")
            return response.text("invalid JSON", status=400)
        try:
            result = parse_webhook(payload, allow_text_payloads=config.allow_text_payloads)
        except WebhookPayloadError as exc:
            logger.warning("WhatsApp: webhook ignored: %s", exc)
            return response.json({"status": "ignored"})
        except Exception as exc:  # noqa: BLE001 - a shape the parser did not foresee
            appcare_metrics.WA_ERRORS.labels("webhook_payload").inc()
            logger.error("WhatsApp: webhook ignored: payload could not be parsed (%s)", _where(exc))
            return response.json({"status": "ignored"})
        for reason in result.skipped:
            logger.warning("WhatsApp: webhook item skipped: %s", reason)
        for code, title in result.errors:
            logger.warning("WhatsApp: webhook reports error code=%s (%s)", code, (title or "")[:60])
        messages, statuses = result.messages, result.statuses
        received_ts = time.time()
        try:
            counts = await service.accept(messages, statuses, received_ts)
        except Exception as exc:  # noqa: BLE001
            if _is_outage(exc):
                raise  # 503: Meta retries once the database is back
            appcare_metrics.WA_ERRORS.labels("webhook_payload").inc()
            logger.error("WhatsApp: webhook skipped: could not be stored (%s)", _where(exc))
            return response.json({"status": "ignored"})
        return response.json({"status": "ok", **counts})
