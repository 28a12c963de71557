"""Loads and validates the content files (facts per municipality) into typed objects.

Content lives in ``content/national.yml`` (shared national facts) and
``content/<municipality>.yml``; the municipality's file overrides national keys.
Errors name the file, the line and the problem, so content editors can fix them
without reading Python. Loaded content is cached and reloaded when a file changes,
so a fact change takes effect in the running bot without a restart.
``load_from`` and ``validate_dir`` read another directory (the editors check a change
on a copy) without the cache and without changing ``CONTENT_DIR``.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pydantic import BaseModel, Extra, ValidationError, root_validator, validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from appcare.clock import WEEKDAY_NAMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTENT_DIR = Path(os.environ.get("APPCARE_CONTENT_DIR", PROJECT_ROOT / "content"))
NATIONAL_FILE = "national.yml"
DEFAULT_MUNICIPALITY = "terneuzen"
STALE_AFTER_DAYS = 365  # a fact checked at its source longer ago is worth checking again (editors, validation)
WEEKDAYS = WEEKDAY_NAMES  # the keys of weekly opening hours (also used by desk.editor.content)
_RANGE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def default_municipality() -> str:
    return os.environ.get("APPCARE_MUNICIPALITY", DEFAULT_MUNICIPALITY).strip().lower()


def strict_facts() -> bool:
    """Strict production setting: never quote an unverified fact."""
    return os.environ.get("APPCARE_STRICT_FACTS", "").lower() in {"1", "true", "yes", "on"}


def money(amount: float) -> str:
    """An amount as a citizen reads it: "€ 1.069,00"."""
    return "€ " + f"{amount:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")


class ContentError(Exception):
    """A content file is missing, unreadable or invalid."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- models


class _Strict(BaseModel):
    class Config:
        extra = Extra.forbid
        arbitrary_types_allowed = True


class Fact(_Strict):
    value: Any
    source: str
    checked: dt.date
    verified: bool = True
    year: Optional[int] = None
    note: Optional[str] = None

    @validator("source")
    def _source_is_url(cls, v: str) -> str:
        if not re.match(r"^https?://\S+$", v or ""):
            raise ValueError("source must be a web address starting with http:// or https://")
        return v

    @validator("checked")
    def _checked_not_future(cls, v: dt.date) -> dt.date:
        if v > dt.date.today() + dt.timedelta(days=1):
            raise ValueError("checked date lies in the future")
        return v


class FeeFact(Fact):
    value: float

    @root_validator(pre=True)
    def _year_given(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        if "year" not in values:
            raise ValueError("a fee needs `year:` (the year the amount applies to; null only with verified: false)")
        if values.get("year") is None and values.get("verified", True):
            raise ValueError("a fee without a year must be marked `verified: false`")
        return values

    @validator("value")
    def _non_negative(cls, v: float) -> float:
        if v < 0:
            raise ValueError("a fee cannot be negative")
        return v


class HoursFact(Fact):
    value: Dict[str, List[str]]

    @validator("value")
    def _weekly_hours(cls, v: Dict[str, List[str]]) -> Dict[str, List[str]]:
        unknown = set(v) - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"unknown weekday(s) {sorted(unknown)}; use {', '.join(WEEKDAYS)}")
        missing = [d for d in WEEKDAYS if d not in v]
        if missing:
            raise ValueError(f"missing weekday(s) {missing}; use [] for a closed day")
        for day, ranges in v.items():
            for item in ranges:
                _check_range(item, day)
        return v


def _check_range(item: str, where: str) -> None:
    if not isinstance(item, str) or not _RANGE.match(item):
        raise ValueError(f"{where}: '{item}' is not a time range like 08:30-17:00")
    start, end = item.split("-")
    if start >= end:
        raise ValueError(f"{where}: '{item}' ends before it starts")


class TextListFact(Fact):
    value: List[str]


class TextFact(Fact):
    value: str


class IntFact(Fact):
    value: int


class BoolFact(Fact):
    value: bool


class MarriageLocation(_Strict):
    name: str
    seats: Optional[int] = None


class LocationsFact(Fact):
    value: List[MarriageLocation]


class MunicipalityInfo(_Strict):
    id: str
    name: str
    timezone: str = "Europe/Amsterdam"


class Contact(_Strict):
    phone: TextFact
    email: TextFact
    website: TextFact
    appointment_url: TextFact
    privacy_url: TextFact


class Desk(_Strict):
    name: str
    address: Optional[TextFact] = None
    hours: HoursFact
    # true: a visit is (usually) by appointment ("meestal op afspraak"); absent: not known
    by_appointment: Optional[BoolFact] = None


class Kcc(_Strict):
    hours: HoursFact


class ClosureException(_Strict):
    date: dt.date
    desk: Optional[str] = None  # None: all desks
    hours: List[str] = []  # [] means closed all day
    reason: str
    source: str
    checked: dt.date
    verified: bool = True

    @validator("hours", each_item=True)
    def _ranges(cls, v: str) -> str:
        _check_range(v, "hours")
        return v


class Closures(_Strict):
    closed_on_public_holidays: BoolFact
    exceptions: List[ClosureException] = []


class PassportFees(_Strict):
    paspoort_18_plus: FeeFact
    paspoort_under_18: FeeFact
    id_kaart_18_plus: FeeFact
    id_kaart_under_18: FeeFact
    express_surcharge: FeeFact


class Passport(_Strict):
    fees: PassportFees
    fees_table_url: TextFact
    validity_years_adult: IntFact
    validity_years_minor: IntFact
    processing_working_days: IntFact  # differs per municipality: set in its own file
    express_cutoff: TextFact  # differs per municipality: set in its own file
    collect_within_months: IntFact
    id_duty_age: IntFact
    bring: TextListFact
    child_consent: TextFact
    lost_steps: TextListFact
    # Facts the answers only state when the content has them (absent: not said):
    apply_in_person: Optional[BoolFact] = None  # true: "you come in person" to apply
    pickup_notification: Optional[BoolFact] = None  # true: "you get a message when it is ready"
    pickup_bring_old_document: Optional[BoolFact] = None  # true: "bring your old document to the pick-up"


class Marriage(_Strict):
    notice_min_days: IntFact
    notice_max_months: IntFact
    notice_how: TextFact
    notice_online: Optional[TextFact] = None
    witnesses: TextFact
    conditions: TextFact
    difference: TextFact
    locations: Optional[LocationsFact] = None
    own_location: Optional[TextFact] = None
    cost_weekday: Optional[FeeFact] = None
    cost_saturday: Optional[FeeFact] = None
    free_option: Optional[TextFact] = None
    info_url: Optional[TextFact] = None


class Roadworks(_Strict):
    page_url: TextFact
    feed_file: Optional[str] = None


class Crisis(_Strict):
    """Numbers a citizen in danger or acute need gets at once (with the urgent handoff)."""

    emergency: TextFact  # 112
    suicide_line: TextFact  # 113 Zelfmoordpreventie
    domestic_violence_line: TextFact  # Veilig Thuis
    municipal_line: Optional[TextFact] = None  # the municipality's own out-of-hours number


class MunicipalContent(_Strict):
    municipality: MunicipalityInfo
    contact: Contact
    desks: Dict[str, Desk]
    kcc: Kcc
    closures: Closures
    passport: Passport
    marriage: Marriage
    roadworks: Roadworks
    crisis: Crisis

    @validator("desks")
    def _balie_present(cls, v: Dict[str, Desk]) -> Dict[str, Desk]:
        if "balie" not in v:
            raise ValueError("a desk with the key `balie` (the public counter) is required")
        return v

    @root_validator(skip_on_failure=True)
    def _exception_desks_exist(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        desks = values.get("desks", {})
        for exc in values.get("closures").exceptions:
            if exc.desk and exc.desk not in desks:
                raise ValueError(f"closure on {exc.date} names unknown desk '{exc.desk}'")
        return values

    # ----------------------------------------------------------- helpers for actions
    def unverified_facts(self) -> List[str]:
        return [path for path, fact in iter_facts(self) if not fact.verified]

    def unverified_texts(self) -> List[str]:
        """The texts an unverified fact shows in a reply (links, phone numbers, amounts,
        sentences, list items), minus texts a verified fact has too: a reply containing one
        quotes an unverified fact. Short values (numbers, times) are left out; the actions
        check those themselves. Safety facts (crisis numbers) are never withheld."""
        verified, unverified = set(), set()
        for path, fact in iter_facts(self):
            if is_safety_fact(path):
                continue
            (verified if fact.verified else unverified).update(fact_texts(fact))
        return sorted(t for t in unverified - verified if len(t) >= MIN_MATCH_LENGTH)


# Crisis numbers (112, 113, Veilig Thuis) are given to a citizen in danger at once, in
# every mode: withholding them would be worse than quoting an unconfirmed number.
SAFETY_PREFIXES = ("crisis.",)
MIN_MATCH_LENGTH = 6


def is_safety_fact(path: str) -> bool:
    return path.startswith(SAFETY_PREFIXES)


def fact_texts(fact: "Fact") -> List[str]:
    """The forms in which a fact's value appears in a reply."""
    value = fact.value
    if isinstance(fact, FeeFact):
        return [money(value)]
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list):
        return [(item.name if isinstance(item, MarriageLocation) else str(item)).strip() for item in value]
    return []


def iter_facts(obj: Any, path: str = "") -> Iterator[Tuple[str, Fact]]:
    """Yields (dotted path, fact) for every fact in a content object."""
    if isinstance(obj, Fact):
        yield path, obj
        return
    if isinstance(obj, BaseModel):
        for name in obj.__fields__:
            yield from iter_facts(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from iter_facts(item, f"{path}.{key}" if path else str(key))


# --------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    content: MunicipalContent
    mtimes: Dict[Path, float]


_cache: Dict[str, _Loaded] = {}
_lock = threading.Lock()


def _read_yaml(path: Path) -> CommentedMap:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContentError([f"{_rel(path)}: file not found"])
    except UnicodeDecodeError as exc:
        raise ContentError([f"{_rel(path)}: not valid UTF-8 text ({exc.reason})"])
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ContentError([f"{_rel(path)}{line}: YAML syntax error: {problem}"])
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ContentError([f"{_rel(path)}:1: the file must contain key: value pairs at the top level"])
    return data


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override if override is not None else base


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    return obj


def line_of(doc: Any, loc: Tuple[Any, ...]) -> Optional[int]:
    """Best line number (1-based) of a location (keys and list indexes, as in a pydantic
    error or a dotted fact path split at the dots) inside a ruamel document."""
    node, line = doc, None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            try:
                line = node.lc.key(key)[0] + 1
            except Exception:  # noqa: BLE001 - line info is best effort
                pass
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            try:
                line = node.lc.item(key)[0] + 1
            except Exception:  # noqa: BLE001
                pass
            node = node[key]
        else:
            break
    return line


def _has_path(doc: Any, loc: Tuple[Any, ...]) -> bool:
    node = doc
    for key in loc[:1]:
        if not (isinstance(node, dict) and key in node):
            return False
    return True


def content_path(municipality: str, content_dir: Optional[Path] = None) -> Path:
    return Path(content_dir or CONTENT_DIR) / f"{municipality}.yml"


def available_municipalities(content_dir: Optional[Path] = None) -> List[str]:
    """The municipalities with a file in ``content_dir`` (default: ``CONTENT_DIR``)."""
    directory = Path(content_dir or CONTENT_DIR)
    return sorted(p.stem for p in directory.glob("*.yml") if p.name != NATIONAL_FILE)


def load_from(content_dir: Path, municipality: str) -> MunicipalContent:
    """Reads, merges and validates the content of one municipality from the files in
    ``content_dir`` (not cached; ``CONTENT_DIR`` is neither used nor changed)."""
    if not re.match(r"^[a-z][a-z0-9_-]*$", municipality or ""):
        raise ContentError([f"invalid municipality name '{municipality}'"])
    national_path = Path(content_dir) / NATIONAL_FILE
    own_path = content_path(municipality, content_dir)
    national = _read_yaml(national_path)
    own = _read_yaml(own_path)
    merged = _merge(_to_plain(national), _to_plain(own))
    try:
        return MunicipalContent.parse_obj(merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            loc = tuple(x for x in loc if x != "__root__")
            dotted = ".".join(str(x) for x in loc) or "(top level)"
            in_own = line_of(own, loc)
            path, line = (own_path, in_own) if in_own else (national_path, line_of(national, loc))
            where = f"{_rel(path)}:{line}" if line else _rel(own_path)
            message = error["msg"]
            if error["type"] == "value_error.missing":
                message = "required field is missing"
            elif error["type"] == "value_error.extra":
                message = "unknown field (typo?)"
            problems.append(f"{where}: {dotted}: {message}")
        raise ContentError(problems)


def load_uncached(municipality: str) -> MunicipalContent:
    """Reads, merges and validates the content of one municipality from ``CONTENT_DIR``."""
    return load_from(CONTENT_DIR, municipality)


def validate_dir(content_dir: Path, municipalities: Optional[List[str]] = None) -> List[str]:
    """Problems of the content in ``content_dir`` (each once, file:line where known), for
    ``municipalities`` (default: every municipality file there); [] when it is valid.
    Nothing is cached and ``CONTENT_DIR`` is neither used nor changed."""
    problems: List[str] = []
    for municipality in municipalities or available_municipalities(content_dir):
        try:
            load_from(content_dir, municipality)
        except ContentError as exc:
            for problem in exc.problems:
                if problem not in problems:  # a national file's problem shows for every municipality
                    problems.append(problem)
    return problems


def _mtimes(municipality: str) -> Dict[Path, float]:
    paths = [CONTENT_DIR / NATIONAL_FILE, content_path(municipality)]
    return {p: (p.stat().st_mtime if p.exists() else 0.0) for p in paths}


def load(municipality: Optional[str] = None) -> MunicipalContent:
    """Cached content of a municipality; reloaded when one of its files changed."""
    municipality = (municipality or default_municipality()).lower()
    with _lock:
        cached = _cache.get(municipality)
        current = _mtimes(municipality)
        if cached and cached.mtimes == current:
            return cached.content
        content = load_uncached(municipality)
        _cache[municipality] = _Loaded(content, current)
        return content


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def use_content_dir(path: Path) -> Path:
    """Loads content from ``path`` from now on (tests, tools); returns the previous
    directory so the caller can switch back. Clears the cache."""
    global CONTENT_DIR
    with _lock:
        previous, CONTENT_DIR = CONTENT_DIR, Path(path)
        _cache.clear()
    return previous
