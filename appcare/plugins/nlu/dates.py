"""Dutch day and date expressions in chat text (entity ``date_expr``).

Finds where a citizen names a day or a period: "woensdagavond", "morgenochtend om kwart
over negen", "vanavond", "2e paasdag", "oudjaarsdag", "tussen kerst en oud en nieuw",
"volgende week dinsdag", "27 april", "24-12", "over twee weken", "dit weekend".
The value is the text as typed; ``appcare.clock`` turns it into dates.

The vocabulary comes from the libraries: month names, weekday names and relative
words ("vandaag", "overmorgen", "volgende week") from dateparser's Dutch locale, public
holiday names from the ``holidays`` package. Written here are only the spellings
citizens use for named days ("2e kerst", "oud en nieuw", "hemelvaart") and the days the
libraries do not know as holidays (kerstavond, oudjaarsdag, pakjesavond).
Durations ("10 jaar geldig", "5 werkdagen") and times on their own ("om 9 uur") are no
day expressions.

Follow-ups: a day relative to the day the bot just answered ("de dag erna", "een dag
eerder", "the next day"; ``relative_offset``) and, when nothing else in the message is a
day, a bare day part ("ook 's avonds?", "en in de middag"). Other languages: weekday
names (also inflected forms such as Polish "sobotę") and today/tomorrow from
dateparser's English, German, French, Polish and Turkish locales ("and on Saturday?",
"am Samstag?", "w sobotę?", "yarın").
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Dict, List, Optional, Sequence, Tuple

from appcare.clock import WEEKDAY_NAMES
from appcare.plugins.nlu.ages import NUMBER_WORD, number_value

Span = Tuple[int, int, str]

WEEKDAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTH_KEYS = ("january", "february", "march", "april", "may", "june", "july", "august",
              "september", "october", "november", "december")

# Languages whose weekday names and today/tomorrow words are recognised next to Dutch.
FOREIGN_LANGUAGES = ("en", "de", "fr", "pl", "tr")
# dateparser relative-type keys -> days from today (yesterday is left out: French "hier"
# is Dutch for "here").
FOREIGN_DAY_KEYS = {"0 day ago": 0, "in 1 day": 1, "in 2 day": 2}

# Day parts as citizens glue them to a day ("woensdagavond", "zaterdagmorgen") -> canonical.
DAY_PARTS = {"ochtend": "ochtend", "morgen": "ochtend", "vroeg": "ochtend", "voormiddag": "ochtend",
             "middag": "middag", "namiddag": "middag", "avond": "avond", "nacht": "nacht"}
_DP = r"(?:ochtend|morgen|voormiddag|namiddag|middag|avond|nacht)"
_S_DP = r"'?s\s*(?:ochtends|morgens|middags|avonds|nachts)"

# Days that are no public holiday in the holidays library, with their (month, day).
SPECIAL_DAYS: Dict[str, Tuple[int, int]] = {
    "Kerstavond": (12, 24),
    "Oudjaarsdag": (12, 31),
    "Pakjesavond": (12, 5),
}
_ORD1 = r"(?:eerste|1e|1ste)\s*"
_ORD2 = r"(?:tweede|2e|2de)\s*"
# Citizen spellings -> holidays library name (nl) or a SPECIAL_DAYS key. More specific first.
NAMED_DAY_ALIASES: List[Tuple[str, str]] = [
    (rf"{_ORD2}kerst(?:dag|mis)?|boxing\s*day", "Tweede Kerstdag"),
    (r"kerstavond", "Kerstavond"),
    (rf"{_ORD1}kerst(?:dag|mis)?|kerstmis|kerstdag|kerst", "Eerste Kerstdag"),
    (r"oude?jaars?(?:dag|avond)?|oud\s*(?:en|&|n|'n)\s*nieuw", "Oudjaarsdag"),
    (r"nieuwjaar(?:sdag)?", "Nieuwjaarsdag"),
    (r"goede\s*vrijdag", "Goede Vrijdag"),
    (rf"{_ORD2}paas(?:dag|maandag)?|{_ORD2}pasen|paasmaandag", "Tweede paasdag"),
    (rf"{_ORD1}paas(?:dag|zondag)?|{_ORD1}pasen|paaszondag|pasen", "Eerste paasdag"),
    (r"koning(?:s|innen?)?dag", "Koningsdag"),
    (r"bevrijdingsdag", "Bevrijdingsdag"),
    (r"hemelvaart(?:s?dag)?", "Hemelvaartsdag"),
    (rf"{_ORD2}pinkster(?:dag|en|maandag)?|pinkstermaandag", "Tweede Pinksterdag"),
    (rf"{_ORD1}pinkster(?:dag|en|zondag)?|pinksterzondag|pinksteren", "Eerste Pinksterdag"),
    (r"sinterklaas(?:avond)?|pakjesavond", "Pakjesavond"),
]
# Periods with a fixed place in the year.
PERIOD_WORDS = r"kerstdagen|(?:de\s+)?feestdagen|kerstvakantie"
# "8-12 jaar", "9-17 uur": a range of numbers, no date
_FOLLOWED_BY_AMOUNT = (r"\s*(?:jaar|jr|jaren|uur|u|euro|eur|dagen|dag|weken|week|maanden|maand|werkdagen|keer|x|"
                       r"personen|mensen|getuigen|minuten|min|procent|%)\b")


def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


@functools.lru_cache(maxsize=1)
def vocabulary() -> Dict[str, object]:
    """Dutch weekday, month and relative words from dateparser, holiday names from holidays."""
    import holidays
    from dateparser.languages import default_loader

    info = default_loader.get_locale("nl").info
    weekdays = [max(info[key], key=len) for key in WEEKDAY_KEYS]
    months = [m for key in MONTH_KEYS for m in info[key]]
    relative = info["relative-type"]
    day_words = [w for key, words in relative.items() if key.endswith(" day") or key.endswith(" day ago")
                 for w in words if " " not in w]
    week_words = [w for key, words in relative.items() if re.search(r"\bweek\b", key) and "ago" not in key
                  for w in words]
    generated: List[Tuple[str, str]] = []
    this_year = dt.date.today().year
    for year in range(this_year - 1, this_year + 2):
        table = holidays.NL(years=year, language="nl", categories=("public", "optional"))
        for name in set(table.values()):
            pattern = re.escape(name.lower()).replace(r"\ ", r"\s+")
            pattern = re.sub(r"^eerste\\s\+", lambda _: _ORD1, pattern)
            pattern = re.sub(r"^tweede\\s\+", lambda _: _ORD2, pattern)
            if (pattern, name) not in generated:
                generated.append((pattern, name))
    foreign_weekdays: Dict[str, int] = {}
    foreign_day_words: Dict[str, int] = {}
    for code in FOREIGN_LANGUAGES:
        foreign = default_loader.get_locale(code).info
        for index, key in enumerate(WEEKDAY_KEYS):
            # full names and inflections; abbreviations ("sat", "mi", "sob") are too ambiguous
            for form in foreign.get(key) or []:
                if len(form) >= 4:
                    foreign_weekdays.setdefault(form.lower(), index)
        for key, offset in FOREIGN_DAY_KEYS.items():
            for word in (foreign.get("relative-type") or {}).get(key) or []:
                if offset == 0 and " " in word:
                    continue  # "till date"
                foreign_day_words.setdefault(word.lower(), offset)
    for word in weekdays + day_words:  # Dutch first ("morgen" is Dutch and German)
        foreign_weekdays.pop(word.lower(), None)
        foreign_day_words.pop(word.lower(), None)
    return {
        "weekdays": weekdays,
        "foreign_weekdays": foreign_weekdays,
        "foreign_day_words": foreign_day_words,
        "months": months,
        "day_words": day_words,
        "week_words": week_words,
        "unit_day": info["day"],
        "unit_week": info["week"],
        "named": generated + NAMED_DAY_ALIASES,
    }


@functools.lru_cache(maxsize=1)
def _patterns() -> Dict[str, re.Pattern]:
    v = vocabulary()
    wd = f"(?:{_alternation(v['weekdays'])})"
    months = f"(?:{_alternation(v['months'])})\\.?"
    named = "|".join(f"(?:{p})" for p, _ in v["named"])
    day_num = r"(?:[12]\d|3[01]|0?[1-9])"
    date_num = rf"(?:{day_num}(?:e|ste|de)?\s*{months}(?:\s+\d{{4}})?(?!\w))"
    numeric = (rf"(?<![\d.,/+-])(?:{day_num})[-/](?:0?[1-9]|1[0-2])(?:[-/](?:\d{{4}}|\d{{2}}))?"
               rf"(?![\d/-])(?!{_FOLLOWED_BY_AMOUNT})")
    weekday = (
        rf"(?:(?:volgende|komende|aankomende|aanstaande|deze|vorige)\s+(?:week\s+)?)?"
        rf"{wd}(?:{_DP})?s?"
        rf"(?:\s+(?:in\s+de\s+)?{_DP}\b|\s+{_S_DP})?"
        rf"(?:\s+(?:a\.?s\.?(?!\w)|aanstaande|(?:van\s+)?(?:deze|volgende|komende)\s+week|over\s+een\s+week))?"
        rf"(?:\s+(?:de\s+)?(?:{date_num}|{day_num}(?:e|ste|de)\b|{numeric}))?"
    )
    day_words = _alternation(v["day_words"])
    relative = (
        rf"(?:(?<!goede\s)(?<!goeden\s)(?:{day_words})(?:{_DP}|vroeg)?(?:\s+(?:in\s+de\s+)?{_DP}\b|\s+vroeg\b)?"
        rf"|van(?:ochtend|morgen|middag|avond|nacht))"
    )
    units = _alternation([u for u in list(v["unit_day"]) + list(v["unit_week"]) if len(u) > 2])
    over_n = rf"over\s+(?:\d{{1,2}}|{NUMBER_WORD})\s+(?:{units})\b"
    time = (rf"(?:(?:kwart\s+(?:over|voor)\s+|half\s+)?(?:\d{{1,2}}(?:[:.]\d{{2}})?|{NUMBER_WORD})"
            rf"(?:\s*(?:uur|u)\b)?)")
    time_suffix = rf"(?:\s+(?:om|rond|tegen|vanaf|na|voor)\s+{time}(?!\w)|\s+{_S_DP})?"
    foreign = _alternation(list(v["foreign_weekdays"]) + list(v["foreign_day_words"]))
    anchored = rf"(?:{_ANCHORED})(?:\s+in\s+de\s+{_DP}\b)?"
    day = rf"(?:{named}|{weekday}|{date_num}|{numeric}|{relative}|{over_n}|{anchored}|{foreign})"
    bare_day = rf"(?:{named}|{wd}|{date_num}|{numeric}|{relative})"
    week_words = _alternation(v["week_words"])
    period = (
        rf"(?:(?:{week_words})|(?:deze|komende|aankomende|de\s+komende)\s+week|door\s+de\s+week|doordeweeks"
        rf"|(?:dit|het|komend|aankomend|volgend|volgende|deze)\s+weekend"
        rf"|weekends?|{PERIOD_WORDS})"
    )
    ranges = (
        rf"(?:tussen\s+{bare_day}\s+en\s+{bare_day}"
        rf"|van(?:af)?\s+{bare_day}\s+(?:tot\s+en\s+met|t/m|tm|tot)\s+{bare_day}"
        rf"|{bare_day}\s+(?:t/m|tm|tot\s+en\s+met)\s+{bare_day})"
    )
    flags = re.IGNORECASE
    return {
        "day": re.compile(rf"\b{day}{time_suffix}(?!\w)", flags),
        "period": re.compile(rf"\b{period}(?!\w)", flags),
        "range": re.compile(rf"\b{ranges}(?!\w)", flags),
        "token": re.compile(r"\b[a-z]{5,16}\b", flags),
        "bare_part": re.compile(rf"(?<![\w'’]){_BARE_PART}(?!\w)", flags),
    }


def warm_up() -> None:
    """Builds the vocabulary and patterns now (component load) instead of on the first message."""
    find_dates("woensdagavond tussen kerst en oud en nieuw 24-12")


# ------------------------------------------------------------------ typos
def _within_one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) <= 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def weekday_typo(token: str) -> Optional[str]:
    """The weekday a mistyped token means ("woensdg", "donderdah", "zatedagavond"), or None.
    Returns the token with the weekday corrected (day part kept)."""
    lowered = token.lower()
    part = ""
    for dp in ("ochtend", "morgen", "voormiddag", "namiddag", "middag", "avond", "nacht"):
        if lowered.endswith(dp) and len(lowered) > len(dp) + 4:
            lowered, part = lowered[: -len(dp)], dp
            break
    if lowered.endswith("s") and len(lowered) > 6:
        lowered = lowered[:-1]
    if len(lowered) < 6:
        return None
    for name in vocabulary()["weekdays"]:
        if lowered != name and lowered[0] == name[0] and _within_one_edit(lowered, name):
            return name + part
    return None


def fix_weekday_typos(text: str) -> str:
    pattern = _patterns()["token"]
    return pattern.sub(lambda m: weekday_typo(m.group(0)) or m.group(0), text)


# ------------------------------------------------------------------ finding
# Days counted from the day the bot just answered ("de dag erna", "een dag eerder",
# "twee dagen later", "the next day", "am Tag danach", "le lendemain").
_COUNT = rf"(?:\d{{1,2}}|een|één|a|one|two|three|einen|zwei|drei|{NUMBER_WORD})"
_BACKWARD = (r"eerder|ervoor|daarvoor|voordien|vorige|previous|before|earlier|davor|zuvor|vorher|"
             r"früher|fruher|veille|précédent|precedent|d'avant")
_ANCHORED = (
    rf"(?:de\s+|een\s+)?dag\s+(?:erna|daarna|erop|daarop|nadien|ervoor|daarvoor|voordien)"
    rf"|{_COUNT}\s+dag(?:en)?\s+(?:later|eerder|erna|daarna|ervoor|daarvoor)"
    rf"|(?:de\s+)?(?:volgende|daaropvolgende|vorige)\s+dag\b"
    rf"|(?:the\s+)?(?:next|following|previous)\s+day\b"
    rf"|the\s+day\s+(?:after|before)(?!\s+(?:tomorrow|yesterday))"
    rf"|{_COUNT}\s+days?\s+(?:later|earlier|after|before)(?!\s+(?:tomorrow|yesterday))"
    rf"|(?:am\s+)?(?:nächsten|nachsten|folgenden|darauffolgenden)\s+tag\b"
    rf"|(?:am\s+)?tag\s+(?:danach|darauf|davor|zuvor)"
    rf"|{_COUNT}\s+tage?\s+(?:später|spater|früher|fruher|danach|davor|vorher)"
    rf"|(?:le\s+)?lendemain|la\s+veille|le\s+jour\s+(?:d'après|d'apres|suivant|précédent|precedent|d'avant)"
)
_ANCHORED_RE = re.compile(rf"\b(?:{_ANCHORED})(?!\w)", re.IGNORECASE)
_COUNT_RE = re.compile(rf"\b(\d{{1,2}}|{NUMBER_WORD}|two|three|zwei|drei)\s+(?:dag|day|tag)", re.IGNORECASE)
_WORD_COUNTS = {"two": 2, "three": 3, "zwei": 2, "drei": 3}
# A day part on its own ("ook 's avonds?", "en in de middag"): the day the bot just answered.
_BARE_PART = (rf"(?:{_S_DP}|’s\s*(?:ochtends|morgens|middags|avonds|nachts)"
              rf"|in\s+de\s+(?:ochtend|morgen|voormiddag|middag|namiddag|avond|nacht)\b)")


def relative_offset(text: str) -> Optional[int]:
    """Days from the day answered last for "de dag erna" (+1), "een dag eerder" (-1),
    "twee dagen later" (+2), "the day before" (-1); None when the text is no such expression."""
    match = _ANCHORED_RE.search(text or "")
    if not match:
        return None
    phrase = match.group(0).lower()
    count = 1
    number = _COUNT_RE.search(phrase)
    if number:
        word = number.group(1).lower()
        count = _WORD_COUNTS.get(word) or number_value(word) or 1
    return -count if re.search(rf"(?:{_BACKWARD})", phrase) else count


def foreign_day(text: str) -> Optional[Tuple[str, int]]:
    """("weekday", 0..6) for a weekday name, ("offset", days) for today/tomorrow in English,
    German, French, Polish or Turkish ("Samstag", "sobotę", "tomorrow", "yarın"), else None."""
    v = vocabulary()
    lowered = (text or "").lower()
    for table, kind in ((v["foreign_day_words"], "offset"), (v["foreign_weekdays"], "weekday")):
        for word in sorted(table, key=len, reverse=True):
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", lowered):
                return kind, table[word]
    return None


_WISH = re.compile(r"\b(?:fijne?|prettige?|goede?|gezellige?|mooie?|lekkere?|gelukkig|zalig|vrolijke?|happy)\s+$",
                   re.IGNORECASE)
_GREETING_MORGEN = re.compile(r"\s*morgen\s*[!,]", re.IGNORECASE)


def _overlaps(start: int, end: int, spans) -> bool:
    return any(start < b and a < end for a, b in spans)


def find_dates(text: str, blocked: Sequence[Tuple[int, int]] = ()) -> List[Span]:
    """Day and period expressions in ``text`` as (start, end, text as typed)."""
    if not text:
        return []
    pats = _patterns()
    candidates: List[Tuple[int, int]] = []
    for key in ("range", "period", "day"):
        for match in pats[key].finditer(text):
            if match.end() > match.start():
                candidates.append(match.span())
    for match in pats["token"].finditer(text):
        if weekday_typo(match.group(0)) and not _overlaps(match.start(), match.end(), candidates):
            candidates.append(match.span())
    # "ook 's avonds?", "en in de morgen?": a day part on its own, only when the message
    # names no other day ("door de week ook 's avonds" is about the week)
    parts = [m.span() for m in pats["bare_part"].finditer(text)]
    if parts and all(any(a <= s and e <= b for a, b in parts) for s, e in candidates):
        candidates += parts
    chosen: List[Tuple[int, int]] = []
    for start, end in sorted(candidates, key=lambda s: (-(s[1] - s[0]), s[0])):
        if _overlaps(start, end, chosen):
            continue
        if _WISH.search(text[:start]) or (start == 0 and _GREETING_MORGEN.match(text)):
            continue  # "fijne feestdagen", "prettig weekend", "Morgen!" (good morning)
        if re.search(r"\d", text[start:end]) and _overlaps(start, end, blocked):
            continue
        chosen.append((start, end))
    return [(a, b, text[a:b].strip()) for a, b in sorted(chosen)]


# ------------------------------------------------------------------ helpers for appcare.clock
@functools.lru_cache(maxsize=1)
def _named_patterns() -> List[Tuple[re.Pattern, str]]:
    return [(re.compile(rf"\b(?:{p})(?!\w)", re.IGNORECASE), name) for p, name in vocabulary()["named"]]


def named_day(text: str) -> Optional[str]:
    """Holiday library name or SPECIAL_DAYS key named in ``text`` ("2e kerst" -> "Tweede Kerstdag")."""
    for pattern, name in _named_patterns():
        if pattern.search(text):
            return name
    return None


_WEEKDAYS = "|".join(WEEKDAY_NAMES)
_SPLIT_PART = re.compile(rf"\b(?P<core>van|vandaag|overmorgen|morgen|{_WEEKDAYS})(?P<part>{_DP}|vroeg)\b",
                         re.IGNORECASE)
_PART_WORD = re.compile(rf"(?:\b(?:in\s+de\s+)?(?P<part>{_DP})\b|\b'?s\s*(?P<s>ochtend|morgen|middag|avond|nacht)s\b)",
                        re.IGNORECASE)
_TIME = re.compile(
    rf"\s+(?:om|rond|tegen|vanaf|na|voor)\s+(?:(?:kwart\s+(?:over|voor)\s+|half\s+)?(?:\d{{1,2}}(?:[:.]\d{{2}})?"
    rf"|{NUMBER_WORD})(?:\s*(?:uur|u)\b)?)(?!\w)",
    re.IGNORECASE,
)


def strip_time(text: str) -> str:
    """Removes a clock time ("om kwart over negen", "om 9:15") from a day expression."""
    return _TIME.sub("", text).strip()


def split_day_part(text: str) -> Tuple[str, Optional[str]]:
    """("woensdagavond" -> "woensdag", "avond"), ("vanavond" -> "vandaag", "avond"),
    ("morgen in de middag" -> "morgen", "middag"); the part is ochtend/middag/avond/nacht."""
    part: Optional[str] = None

    def _split(match: "re.Match[str]") -> str:
        nonlocal part
        part = DAY_PARTS[match.group("part").lower()]
        core = match.group("core").lower()
        return "vandaag" if core == "van" else core

    core = _SPLIT_PART.sub(_split, text)
    if part is None:
        # "morgen" on its own is tomorrow, not a day part; "zaterdag in de ochtend" is one.
        for match in _PART_WORD.finditer(core):
            word = (match.group("part") or match.group("s") or "").lower()
            if word == "morgen" and not match.group(0).lower().startswith(("in", "'s", "s")):
                continue
            part = DAY_PARTS[word]
            core = (core[: match.start()] + core[match.end():]).strip()
            break
    return re.sub(r"\s+", " ", core).strip(), part
