"""Client of a municipality's roadworks source.

The source is JSON in the format documented in docs/roadworks-feed.md:
``{"municipality": ..., "updated": ..., "roadworks": [{"id", "street", "area",
"description", "start", "end", "hindrance", "detour", "url"}]}``.
It is fetched over HTTP with ``requests`` from ``ROADWORKS_URL_<MUNICIPALITY>`` or
``ROADWORKS_URL`` (``{municipality}`` in it is filled in), with a timeout, one retry
and a short cache. Without a URL the local example file named in the content file
is used (the embedded default).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

from appcare.content import CONTENT_DIR, MunicipalContent

logger = logging.getLogger(__name__)
CACHE_SECONDS = float(os.environ.get("ROADWORKS_CACHE_SECONDS", "60"))
TIMEOUT_SECONDS = float(os.environ.get("ROADWORKS_TIMEOUT_SECONDS", "2.5"))


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


class RoadworksClient:
    """Fetches and caches roadworks per municipality."""

    def __init__(self, session: Optional[requests.Session] = None):
        self._session = session or requests.Session()
        self._cache: Dict[str, Tuple[float, List[Roadwork]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def source_url(municipality: str) -> Optional[str]:
        url = os.environ.get(f"ROADWORKS_URL_{municipality.upper()}") or os.environ.get("ROADWORKS_URL")
        return url.replace("{municipality}", municipality) if url else None

    def all(self, content: MunicipalContent) -> List[Roadwork]:
        municipality = content.municipality.id
        with self._lock:
            cached = self._cache.get(municipality)
            if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
        url = self.source_url(municipality)
        items = self._fetch(url) if url else self._read_file(content)
        with self._lock:
            self._cache[municipality] = (time.monotonic(), items)
        return items

    def _fetch(self, url: str) -> List[Roadwork]:
        last_error: Optional[Exception] = None
        for attempt in range(2):  # one retry
            try:
                response = self._session.get(url, timeout=TIMEOUT_SECONDS, headers={"Accept": "application/json"})
                response.raise_for_status()
                return _parse(response.json())
            except (requests.RequestException, ValueError) as exc:
                last_error = exc
                if attempt == 0:
                    time.sleep(0.2)
        logger.warning("roadworks source unreachable or invalid (%s)", type(last_error).__name__)
        raise RoadworksUnavailable(type(last_error).__name__)

    @staticmethod
    def _read_file(content: MunicipalContent) -> List[Roadwork]:
        if not content.roadworks.feed_file:
            return []
        path = Path(CONTENT_DIR) / content.roadworks.feed_file
        try:
            return _parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            logger.warning("local roadworks file unreadable (%s)", type(exc).__name__)
            raise RoadworksUnavailable(type(exc).__name__)

    def find(self, content: MunicipalContent, street: Optional[str] = None, area: Optional[str] = None) -> List[Roadwork]:
        items = self.all(content)
        if street:
            wanted = normalise(street)
            return [r for r in items if normalise(r.street) == wanted or wanted in normalise(r.street)]
        if area:
            wanted = normalise(area)
            return [r for r in items if r.area and normalise(r.area) == wanted]
        return items


_client: Optional[RoadworksClient] = None


def default_client() -> RoadworksClient:
    global _client
    if _client is None:
        _client = RoadworksClient()
    return _client
