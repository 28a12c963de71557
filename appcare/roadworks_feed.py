"""Client of a municipality's roadworks source.

The source is JSON in the format documented in docs/roadworks-feed.md:
``{"municipality": ..., "generated": ..., "example": ..., "roadworks": [{"id", "street",
"area", "description", "start", "end", "hindrance", "detour", "url"}]}``.
It is fetched over HTTP with ``requests`` from ``ROADWORKS_URL_<MUNICIPALITY>`` or
``ROADWORKS_URL`` (``{municipality}`` in it is filled in), with a timeout, one retry
and a short cache. A failure is remembered for a short time too
(``ROADWORKS_FAILURE_CACHE_SECONDS``): meanwhile callers get RoadworksUnavailable at once
instead of each waiting for the same timeout. Callers asking for a URL that is being
fetched wait for that one request instead of opening another connection. Without a URL
the local file named in the content file is used (the embedded default: example
entries, marked ``"example": true``).

A feed marked as example data is never used in strict mode (``APPCARE_STRICT_FACTS``)
or in production (``APPCARE_ENV=production``): :attr:`Feed.usable` is False and the
citizen is referred to the municipality's roadworks page. Elsewhere the citizen is told
in the same message that the works are examples. ``generated`` (the day the overview
was made) lets "no known works" name the overview's date.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import requests

from appcare import clock
from appcare import content as content_module
from appcare import secrets
from appcare.content import MunicipalContent

logger = logging.getLogger(__name__)
CACHE_SECONDS = float(os.environ.get("ROADWORKS_CACHE_SECONDS", "60"))
TIMEOUT_SECONDS = float(os.environ.get("ROADWORKS_TIMEOUT_SECONDS", "2.5"))
FAILURE_CACHE_SECONDS = float(os.environ.get("ROADWORKS_FAILURE_CACHE_SECONDS", "30"))


class RoadworksUnavailable(Exception):
    """The roadworks source could not be reached or gave unusable data."""


@dataclass
class Roadwork:
    id: str
    street: str
    area: Optional[str]
    description: str
    start: dt.date
    end: Optional[dt.date]
    hindrance: Optional[str]
    detour: Optional[str]
    url: Optional[str]

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

    def upcoming_after(self, day: dt.date) -> bool:
        return self.start > day


def normalise(name: str) -> str:
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    text = text.lower().replace("-", " ").replace(".", " ")
    for prefix in ("de ", "het "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return " ".join(text.split())


def examples_refused() -> bool:
    """Strict mode and production never answer from example data."""
    return content_module.strict_facts() or secrets.production()


@dataclass
class Feed:
    """One municipality's roadworks overview as the assistant may use it."""

    items: List[Roadwork] = field(default_factory=list)
    example: bool = False  # top-level "example": true: example entries, not real works
    generated: Optional[dt.date] = None  # the day the overview was made ("generated", else "updated")
    source: str = "none"  # "url", "file" or "none" (no feed configured)
    refused: bool = False  # example data in strict mode or production: not used

    @property
    def usable(self) -> bool:
        """False without a feed or for refused example data: the citizen gets the page."""
        return self.source != "none" and not self.refused

    def find(self, street: Optional[str] = None, area: Optional[str] = None) -> List[Roadwork]:
        if not self.usable:
            return []
        if street:
            wanted = normalise(street)
            return [r for r in self.items if normalise(r.street) == wanted or wanted in normalise(r.street)]
        if area:
            wanted = normalise(area)
            return [r for r in self.items if r.area and normalise(r.area) == wanted]
        return list(self.items)


def _feed_date(document: dict) -> Optional[dt.date]:
    """``generated`` (or the older ``updated``): a date or an ISO date-time (a date-time
    with an offset counts in the municipality's time, Europe/Amsterdam)."""
    for key in ("generated", "updated"):
        value = document.get(key)
        if not isinstance(value, str) or not value:
            continue
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment.astimezone(clock.TZ).date() if moment.tzinfo else moment.date()
        except ValueError:
            logger.warning("roadworks feed: '%s' is no date (YYYY-MM-DD)", key)
    return None


def parse_feed(document: dict, source: str) -> Feed:
    """The feed in ``document``; raises RoadworksUnavailable when it has no roadworks list."""
    items = _parse(document)
    example = document.get("example") is True or str(document.get("example")).lower() == "true"
    return Feed(items=items, example=example, generated=_feed_date(document), source=source)


def _parse(document: dict) -> List[Roadwork]:
    if not isinstance(document, dict) or not isinstance(document.get("roadworks"), list):
        raise RoadworksUnavailable("feed has no 'roadworks' list")
    items = []
    for raw in document["roadworks"]:
        try:
            items.append(
                Roadwork(
                    id=str(raw.get("id") or raw["street"]),
                    street=str(raw["street"]),
                    area=raw.get("area"),
                    description=str(raw.get("description") or "werkzaamheden"),
                    start=dt.date.fromisoformat(raw["start"]),
                    end=dt.date.fromisoformat(raw["end"]) if raw.get("end") else None,
                    hindrance=raw.get("hindrance"),
                    detour=raw.get("detour"),
                    url=raw.get("url"),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("roadworks feed: skipped an entry with a bad field (%s)", type(exc).__name__)
    return items


@dataclass
class _Flight:
    """One fetch of a URL in progress; callers asking for the same URL wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    feed: Optional[Feed] = None
    error: str = "unavailable"


class RoadworksClient:
    """Fetches and caches roadworks per municipality; safe to share between threads."""

    def __init__(self, session: Optional[requests.Session] = None):
        self._session = session or requests.Session()
        self._cache: Dict[str, Tuple[float, Feed]] = {}  # by URL or file: (when, feed)
        self._failed: Dict[str, Tuple[float, str]] = {}  # by URL: (when, error)
        self._flights: Dict[str, _Flight] = {}  # by URL: the fetch in progress
        self._lock = threading.Lock()

    @staticmethod
    def source_url(municipality: str) -> Optional[str]:
        url = os.environ.get(f"ROADWORKS_URL_{municipality.upper()}") or os.environ.get("ROADWORKS_URL")
        return url.replace("{municipality}", municipality) if url else None

    @staticmethod
    def feed_path(content: MunicipalContent) -> Optional[Path]:
        """The local feed file (read when no URL is set); None when the content names none."""
        if not content.roadworks.feed_file:
            return None
        return Path(content_module.CONTENT_DIR) / content.roadworks.feed_file

    def feed(self, content: MunicipalContent) -> Feed:
        """The municipality's feed; raises RoadworksUnavailable when the source is down or
        invalid. Example data in strict mode or production comes back ``refused``."""
        url = self.source_url(content.municipality.id)
        path = None if url else self.feed_path(content)
        if url:
            feed = self._from_url(url)
        elif path:
            feed = self._from_file(path)
        else:
            feed = Feed(source="none")
        if feed.example and examples_refused():
            return Feed(example=True, generated=feed.generated, source=feed.source, refused=True)
        return feed

    def _fresh(self, key: str) -> Optional[Feed]:
        """The cached feed of ``key`` when younger than CACHE_SECONDS (hold the lock)."""
        cached = self._cache.get(key)
        return cached[1] if cached and time.monotonic() - cached[0] < CACHE_SECONDS else None

    def _from_file(self, path: Path) -> Feed:
        with self._lock:
            feed = self._fresh(str(path))
        if feed is None:
            feed = self._read_file(path)
            with self._lock:
                self._cache[str(path)] = (time.monotonic(), feed)
        return feed

    def _from_url(self, url: str) -> Feed:
        """The feed at ``url``: cached, or fetched once for every caller that asks while
        the fetch runs. A failure within FAILURE_CACHE_SECONDS raises at once."""
        with self._lock:
            feed = self._fresh(url)
            if feed is not None:
                return feed
            failed = self._failed.get(url)
            if failed and time.monotonic() - failed[0] < FAILURE_CACHE_SECONDS:
                raise RoadworksUnavailable(f"{failed[1]} (failed recently, not retried yet)")
            flight = self._flights.get(url)
            leading = flight is None
            if leading:
                flight = self._flights[url] = _Flight()
        if not leading:
            return self._wait_for(flight)
        try:
            flight.feed = self._fetch(url)
            return flight.feed
        except RoadworksUnavailable as exc:
            flight.error = str(exc)
            raise
        finally:
            # cache the outcome before the flight ends, so no caller starts a new fetch between
            with self._lock:
                if flight.feed is not None:
                    self._cache[url] = (time.monotonic(), flight.feed)
                    self._failed.pop(url, None)
                else:
                    self._failed[url] = (time.monotonic(), flight.error)
                del self._flights[url]
            flight.done.set()

    @staticmethod
    def _wait_for(flight: _Flight) -> Feed:
        # The fetch ends within its two timeouts (plus the pause); the margin is a safety net.
        if not flight.done.wait(timeout=4 * TIMEOUT_SECONDS + 5):
            raise RoadworksUnavailable("waited too long for the fetch in progress")
        if flight.feed is None:
            raise RoadworksUnavailable(flight.error)
        return flight.feed

    def all(self, content: MunicipalContent) -> List[Roadwork]:
        return self.feed(content).find()

    def _fetch(self, url: str) -> Feed:
        last_error: Optional[Exception] = None
        for attempt in range(2):  # one retry
            try:
                response = self._session.get(url, timeout=TIMEOUT_SECONDS, headers={"Accept": "application/json"})
                response.raise_for_status()
                return parse_feed(response.json(), "url")
            except (requests.RequestException, ValueError) as exc:
                last_error = exc
                if attempt == 0:
                    time.sleep(0.2)
        logger.warning("roadworks source unreachable or invalid (%s)", type(last_error).__name__)
        raise RoadworksUnavailable(type(last_error).__name__)

    @staticmethod
    def _read_file(path: Path) -> Feed:
        try:
            return parse_feed(json.loads(path.read_text(encoding="utf-8")), "file")
        except (OSError, ValueError) as exc:
            logger.warning("local roadworks file unreadable (%s)", type(exc).__name__)
            raise RoadworksUnavailable(type(exc).__name__)

    def find(self, content: MunicipalContent, street: Optional[str] = None, area: Optional[str] = None) -> List[Roadwork]:
        return self.feed(content).find(street=street, area=area)


def source_status(content: MunicipalContent) -> str:
    """Where this municipality's roadworks come from, for the start-up report and log.
    Reads a local file, never the network (start-up must not wait for a feed)."""
    municipality = content.municipality.id
    url = RoadworksClient.source_url(municipality)
    if url:
        host = urlsplit(url).hostname or "?"
        return f"feed from {host} (ROADWORKS_URL)"
    path = RoadworksClient.feed_path(content)
    if path is None:
        return f"no feed configured - citizens are referred to {content.roadworks.page_url.value}; set ROADWORKS_URL"
    try:
        feed = RoadworksClient._read_file(path)
    except RoadworksUnavailable as exc:
        return f"local feed {path.name} unreadable ({exc}) - citizens are referred to {content.roadworks.page_url.value}"
    if feed.example and examples_refused():
        return "example feed - not used in strict mode; set ROADWORKS_URL"
    if feed.example:
        return "example feed - answers say it is example data; set ROADWORKS_URL for the real works"
    return f"local feed {path.name} ({len(feed.items)} entries)"


def log_startup_status() -> None:
    """Logs per municipality where the roadworks come from (the action server's start-up)."""
    for municipality in content_module.available_municipalities():
        try:
            status = source_status(content_module.load(municipality))
        except Exception as exc:  # noqa: BLE001 - a start-up note must never stop the server
            logger.warning("roadworks %s: status unknown (%s)", municipality, type(exc).__name__)
            continue
        usable = status.startswith("feed from") or status.endswith("entries)")
        level = logging.INFO if usable else logging.WARNING
        logger.log(level, "roadworks %s: %s", municipality, status)


_client: Optional[RoadworksClient] = None
_client_lock = threading.Lock()


def default_client() -> RoadworksClient:
    """The client shared by all actions (one cache, one fetch per URL at a time)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = RoadworksClient()
        return _client
