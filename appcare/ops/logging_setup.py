"""Structured, privacy-safe logging for every appcare process.

What it gives:

* one handler on the root logger writing to stderr, either text lines or JSON lines
  (``APPCARE_LOG_FORMAT=json``), with the component name (``APPCARE_COMPONENT``) and,
  when a line mentions a pseudonymous ``sender=``/``recipient=``/``conversation=``
  hash, that hash as the field ``conversation``;
* a redaction filter as the **last line of defence**: whatever a library logs, long
  digit runs (phone numbers, BSNs, WhatsApp ids, epoch stamps), Dutch phone and BSN
  notations, e-mail addresses, IBANs, postcode + house number and "mijn naam is ..."
  are replaced before the line is written, in the message *and* in tracebacks.
  Tokens that are no personal data stay readable: Rasa model names
  (``20261201-180026-brave-fox.tar.gz``), ISO dates and times and uuids.
  Our own code never logs message text, names or numbers in the first place (it logs
  ``appcare.pii.conversation_hash``); the filter catches what others might log.
  It cannot recognise a bare name, so never run production with ``LOG_LEVEL=DEBUG``
  (Rasa then logs message texts and trackers).

How it is wired in (nothing in actions/ needs to change):

* Rasa server and action server: ``--logging-config-file deploy/logging.yml``
  (both ``rasa run`` and ``rasa run actions`` accept it; the file uses the factories
  below). Rasa calls ``coloredlogs.install`` *after* applying the file; the handler
  factory makes that call keep our handler (it only adjusts the level). Sanic's own
  loggers are re-pointed at our handler by the WhatsApp channel
  (:func:`adopt_sanic_loggers`) and by the logging file itself.
* Our own processes (front, desk, tools): ``appcare.ops.logging_setup.configure("front")``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
from typing import Any, Dict, Iterable, List, Optional

from appcare import pii

ENV_FORMAT = "APPCARE_LOG_FORMAT"  # text (default) | json
ENV_LEVEL = "APPCARE_LOG_LEVEL"  # root level, default INFO
ENV_COMPONENT = "APPCARE_COMPONENT"  # e.g. rasa-1, actions-1, front, desk

SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access", "sanic.server")

# --------------------------------------------------------------------------- redaction
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}\s?[A-Z]{4}(?:\s?\d{4}){2}\s?\d{2}\b", re.IGNORECASE)
# 8 or more digits in a row that are not part of a word or hex hash: phone numbers
# in international form (WhatsApp ids), BSNs, account numbers, epoch stamps.
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9_])\+?\d{8,}(?![A-Za-z0-9_])")
_PHONE = pii._PHONE  # Dutch notations with spaces and dashes: 06-12345678, +31 6 1234 5678
_BSN_GROUPED = re.compile(
    r"(?<![\w.:-])\d{4}[\s.-]\d{2}[\s.-]\d{3}(?![\w])|(?<![\w.:-])\d{3}[\s.-]\d{2}[\s.-]\d{2}[\s.-]\d{2}(?![\w.:])"
)
_POSTCODE_NR = re.compile(r"\b[1-9]\d{3}\s?[A-Z]{2}[\s,]+\d{1,5}[a-zA-Z]?\b")
_NAME_INTRO = pii._NAME_INTRO
_CONVERSATION = re.compile(r"\b(?:sender|recipient|conversation)=([0-9a-f]{12})\b")


# Timestamps and ids that are no personal data, kept as they are by the number
# patterns: they are strict shapes (a valid date and time, a uuid) that no phone
# number, BSN, IBAN or postcode has.
_DATE = r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?"
_ZONE = r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?"
_NOT_PERSONAL = re.compile(
    # Rasa model names: YYYYMMDD-HHMMSS-<random name>[.tar.gz], also nlu-/core- models
    r"(?<![\w-])(?:(?:nlu|core)-)?(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    r"-(?:[01]\d|2[0-3])[0-5]\d[0-5]\d-[a-z]+(?:-[a-z]+)*(?:\.tar\.gz)?(?![\w-])"
    # ISO 8601 dates, date-times and times (extended form), and the basic date-time form
    rf"|(?<![\w.:+-]){_DATE}(?:[T ]{_TIME}{_ZONE})?(?![\w:]|[.,]\d)"
    rf"|(?<![\w.:+-]){_TIME}{_ZONE}(?![\w:]|[.,]\d)"
    r"|(?<![\w.:+-])(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3])[0-5]\d[0-5]\d"
    r"(?:[.,]\d{1,9})?Z?(?![\w:])"
    # uuids (8-4-4-4-12 hexadecimal)
    r"|(?<![\w-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-])"
    # our keyed pseudonyms (appcare.pii.conversation_hash) after sender=/recipient=/conversation=:
    # 12 hex characters, all digits in about 1 of 280 (which the digit-run pattern would eat)
    r"|(?<![\w-])(?:sender|recipient|conversation)=[0-9a-f]{12}(?![\w-])"
)


def _redact_numbers(text: str) -> str:
    out = _PHONE.sub("[telefoon]", text)
    out = _BSN_GROUPED.sub("[nummer]", out)
    out = _DIGIT_RUN.sub("[nummer]", out)
    return _POSTCODE_NR.sub("[adres]", out)


def redact(text: Any) -> str:
    """Replaces personal data patterns in a log line (idempotent). Model names, ISO
    dates and times and uuids are left as they are (see ``_NOT_PERSONAL``)."""
    if text is None:
        return ""
    out = str(text)
    if not out:
        return out
    out = _EMAIL.sub("[e-mail]", out)
    out = _IBAN.sub("[IBAN]", out)
    # the number patterns run on the text between the kept tokens only
    parts, start = [], 0
    for kept in _NOT_PERSONAL.finditer(out):
        parts.append(_redact_numbers(out[start:kept.start()]))
        parts.append(kept.group(0))
        start = kept.end()
    parts.append(_redact_numbers(out[start:]))
    out = "".join(parts)
    out = _NAME_INTRO.sub(lambda m: f"{m.group(1)}[naam]", out)
    return out


class RedactFilter(logging.Filter):
    """Handler filter: renders the message, redacts it and the traceback in place
    (so every later handler and formatter only sees the redacted record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_appcare_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken %-format must not lose the line
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._appcare_redacted = True
        return True


# --------------------------------------------------------------------------- formatting
def _component() -> str:
    return os.environ.get(ENV_COMPONENT) or os.path.basename(sys.argv[0] or "python")


class TextFormatter(logging.Formatter):
    def __init__(self, component: Optional[str] = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(component)s] %(message)s")
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        record.component = self.component or _component()
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, component, pid, msg,
    conversation (hash, when known), exc (traceback, redacted)."""

    def __init__(self, component: Optional[str] = None) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        entry: Dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "component": self.component or _component(),
            "pid": record.process,
            "msg": message,
        }
        conversation = getattr(record, "conversation", None)
        if not conversation:
            found = _CONVERSATION.search(message)
            conversation = found.group(1) if found else None
        if conversation:
            entry["conversation"] = str(conversation)[:16]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def make_formatter(fmt: Optional[str] = None, component: Optional[str] = None) -> logging.Formatter:
    """Formatter factory (also used from deploy/logging.yml): JSON with
    ``APPCARE_LOG_FORMAT=json``, text otherwise."""
    fmt = (fmt or os.environ.get(ENV_FORMAT) or "text").strip().lower()
    return JsonFormatter(component) if fmt == "json" else TextFormatter(component)


# --------------------------------------------------------------------------- handler
class AppcareHandler(logging.Handler):
    """Writes formatted, redacted lines to the *current* stderr (or stdout).

    Deliberately not a ``StreamHandler``: ``coloredlogs.install`` (called by Rasa
    after the logging file is applied) would otherwise replace it. ``close()`` by a
    later ``logging.config.dictConfig`` (Sanic does one) does not stop it."""

    def __init__(self, stream: str = "stderr", level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.stream_name = stream if stream in ("stderr", "stdout") else "stderr"
        self.addFilter(RedactFilter())

    @property
    def stream(self) -> Any:  # for code that inspects handler.stream
        return getattr(sys, self.stream_name)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = getattr(sys, self.stream_name)
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:  # pragma: no cover
            raise
        except Exception:  # noqa: BLE001
            self.handleError(record)


_install_lock = threading.Lock()
_coloredlogs_guarded = False


def _guard_coloredlogs() -> None:
    """Makes later ``coloredlogs.install()`` calls keep our handler: they only
    lower the root level when asked for a more verbose one."""
    global _coloredlogs_guarded
    with _install_lock:
        if _coloredlogs_guarded:
            return
        try:
            import coloredlogs
        except ImportError:  # pragma: no cover
            _coloredlogs_guarded = True
            return
        original = coloredlogs.install

        def install(level: Any = None, **kw: Any) -> Any:
            target = kw.get("logger") or logging.getLogger()
            if active() and target is logging.getLogger():
                if level is not None:
                    try:
                        number = coloredlogs.level_to_number(level)
                        if number < target.getEffectiveLevel():
                            target.setLevel(number)
                    except Exception:  # noqa: BLE001
                        pass
                return None
            return original(level, **kw)

        coloredlogs.install = install
        _coloredlogs_guarded = True


def make_handler(stream: str = "stderr", fmt: Optional[str] = None, component: Optional[str] = None) -> AppcareHandler:
    """Handler factory for deploy/logging.yml (``(): appcare.ops.logging_setup.make_handler``)."""
    _guard_coloredlogs()
    handler = AppcareHandler(stream)
    handler.setFormatter(make_formatter(fmt, component))
    return handler


def active() -> bool:
    return any(isinstance(h, AppcareHandler) for h in logging.getLogger().handlers)


def _our_handlers() -> List[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, AppcareHandler)]


def adopt_sanic_loggers(names: Iterable[str] = SANIC_LOGGERS) -> None:
    """Points Sanic's loggers at our handler (instead of Sanic's own unfiltered
    console handlers). No-op unless appcare logging is active."""
    ours = _our_handlers()
    if not ours:
        return
    for name in names:
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            if not isinstance(handler, AppcareHandler):
                lg.removeHandler(handler)
        for handler in ours:
            if handler not in lg.handlers:
                lg.addHandler(handler)
        lg.propagate = False


def harden_all_handlers() -> None:
    """Adds the redaction filter to every handler of every logger (e.g. a file
    handler Rasa adds for ``--log-file``)."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(RedactFilter())


def dict_config(component: Optional[str] = None, level: Optional[str] = None) -> Dict[str, Any]:
    """The logging configuration as a ``logging.config.dictConfig`` dict (the
    same as deploy/logging.yml)."""
    level = (level or os.environ.get(ENV_LEVEL) or "INFO").upper()
    handler: Dict[str, Any] = {"()": "appcare.ops.logging_setup.make_handler"}
    if component:
        handler["component"] = component
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"appcare": handler},
        "loggers": {name: {"handlers": ["appcare"], "propagate": False} for name in SANIC_LOGGERS},
        "root": {"level": level, "handlers": ["appcare"]},
    }


def configure(component: Optional[str] = None, level: Optional[str] = None, fmt: Optional[str] = None) -> None:
    """Sets up logging for one of our own processes (front, desk, tools)."""
    import logging.config

    if component and not os.environ.get(ENV_COMPONENT):
        os.environ[ENV_COMPONENT] = component
    if fmt:
        os.environ[ENV_FORMAT] = fmt
    logging.config.dictConfig(dict_config(component, level))
    logging.captureWarnings(True)
    harden_all_handlers()


def conversation_extra(sender_id: Optional[str]) -> Dict[str, str]:
    """``logger.info("...", extra=conversation_extra(sender_id))`` adds the
    conversation hash as a JSON field."""
    return {"conversation": pii.conversation_hash(sender_id or "")}
