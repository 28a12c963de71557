"""Ages in Dutch chat text (entity ``age``): "18+", "65-plusser", "volwassene",
"mn dochter van zeventien", "kind van 8", "ik ben 42", "ze wordt 16", "16-jarige".

The value is the age as a string of digits ("17", "65"; "volwassene" -> "18").
Number words are converted by ``text_to_num`` (``text2num(..., "nl")``); this module
only decides *where* an age is. Digits inside phone numbers, BSNs, IBANs and postcodes
(``appcare.pii.number_spans``) are never an age, and durations ("10 jaar geldig",
"over 5 jaar", "al 3 jaar getrouwd") are not either.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional, Sequence, Tuple

from text_to_num import text2num

Span = Tuple[int, int, str]  # start, end, value

_UNITS = r"(?:een|twee|drie|vier|vijf|zes|zeven|acht|negen)"
_TENS = r"(?:twintig|dertig|veertig|vijftig|zestig|zeventig|tachtig|negentig)"
_TEENS = r"(?:tien|elf|twaalf|dertien|veertien|vijftien|zestien|zeventien|achttien|negentien)"
# Dutch number words up to 120 as one word ("vijfenzestig", "tweeëntwintig").
NUMBER_WORD = (
    rf"(?:honderd(?:{_UNITS}|{_TEENS}|(?:{_UNITS}(?:en|ën))?{_TENS})?"
    rf"|(?:{_UNITS}(?:en|ën))?{_TENS}|{_TEENS}|{_UNITS})"
)
# An age is written with digits or as a word, never as "een" (that is the article).
_NUM = rf"(?:\d{{1,3}}|(?!een\b){NUMBER_WORD})"
_NUMBER_WORD_RE = re.compile(rf"^{NUMBER_WORD}$", re.IGNORECASE)


def number_value(token: str) -> Optional[int]:
    """Digits or one Dutch number word ("zeventien", "tweeentwintig") -> int, else None."""
    token = token.strip().lower()
    if token.isdigit():
        return int(token)
    if not _NUMBER_WORD_RE.match(token):
        return None
    for candidate in (token, re.sub(r"(twee|drie)en", r"\1ën", token)):
        try:
            return int(text2num(candidate, "nl"))
        except ValueError:
            continue
    return None


# Words after "<n> jaar" that make it a duration, not an age.
_DURATION_AFTER = (
    r"geldig|goed|lang|verlopen|geleden|bezig|getrouwd|samen|weg|hier|in|op|bij|niet|nog|"
    r"woonachtig|ingeschreven|werkzaam|oud\s+is|terug|later|eerder|duurt|gewacht|wachten|"
    r"of\s+langer|houdbaar|gebruikt|gehad|uit|na|voor|mee|te|kwijt|met|de|het|een"
)
# Words after a number that make it something other than an age.
_NOT_AGE_AFTER = (
    r"jan|januari|feb|februari|maart|mrt|apr|april|mei|jun|juni|jul|juli|aug|augustus|sep|sept|"
    r"september|okt|oktober|nov|november|dec|december|dag|dagen|werkdag|werkdagen|week|weken|"
    r"maand|maanden|min|minuut|minuten|uur|u|keer|x|euro|eur|cent|procent|personen|gasten|"
    r"mensen|getuigen|stuks|kinderen|foto|foto's|pasfoto|pasfoto's|km|meter|m|kilo|kg|nummer|"
    r"huisnummer|[.,:/-]\d|van\s+(?:de|het|die|deze|onze|mijn|ons)"
)
_NOT_AGE_AFTER_RE = re.compile(rf"\s*(?:{_NOT_AGE_AFTER})\b", re.IGNORECASE)


def no_age_after(text: str, end: int) -> bool:
    """True when the number ending at ``end`` is a date, time, amount or count ("24 dec",
    "9 uur", "70 euro", "5 dagen", "7,5"), judged by the words after it."""
    return bool(_NOT_AGE_AFTER_RE.match(text, end))
# Words before "<n> jaar" that make it a duration.
_DURATION_BEFORE = re.compile(
    r"\b(?:over|na|sinds|binnen|per|elke|iedere|om\s+de|afgelopen|laatste|voor|duurt|al|ruim|"
    r"minstens|maximaal|maximum|minimaal|tot|nog|zo'?n|ongeveer|pas|geldig|is|blijft|geldt)\s*$",
    re.IGNORECASE,
)
_RELATIVE = (
    r"dochter(?:tje)?|zoon(?:tje)?|kind(?:je|eren)?|baby|kleinkind|kleinzoon|kleindochter|"
    r"jongen|meisje|tiener|puber|broer(?:tje)?|zus(?:je)?|neef(?:je)?|nicht(?:je)?|"
    r"pleegkind|pleegzoon|pleegdochter|stiefzoon|stiefdochter|man|vrouw|moeder|vader|"
    r"opa|oma|schoonmoeder|schoonvader|iemand|persoon|jongere|oudere|partner|vriend(?:in)?|"
    r"kleine|kleintje|jongste|oudste|middelste"
)
_SUBJECT = (
    r"ik|hij|zij|ze|die|diegene|degene|het\s+kind|de\s+aanvrager|"
    rf"(?:mijn|mn|m'n|onze|ons|zijn|haar|z'n)\s+(?:{_RELATIVE})"
)
_VERB = r"ben|is|wordt|word|werd|was|worden|zijn"
_JAAR = r"(?:\s*(?:jaar|jr|jaartjes)(?:\s+oud)?)?"

# "wordt [over een maand] 18"
_SOON = (r"(?:(?:over|binnen|in)\s+(?:een|\d+|twee|drie)\s+(?:dag|dagen|week|weken|maand|maanden)\s+"
         r"|binnenkort\s+|volgende\s+(?:week|maand)\s+)?")

# (regex, kind): the kind decides the checks around the number and how the value is made
_PATTERNS: List[Tuple[re.Pattern, str]] = [
    # "18+", "65 +": the plus sign makes it an age category
    (re.compile(rf"(?<![\w+])(?P<n>\d{{1,3}})\s?\+(?![\w+]|\s*\d)", re.IGNORECASE), "plus"),
    # "65-plusser", "65 plus", "vijfenzestigplussers"
    (re.compile(rf"\b(?P<n>{_NUM})\s?-?\s?plus(?:ser|sers)?\b", re.IGNORECASE), "plus"),
    # "16-jarige", "zestienjarige", "16 jarig"
    (re.compile(rf"\b(?P<n>{_NUM})\s?-?\s?jarig(?:e|en)?\b", re.IGNORECASE), "jarig"),
    # "mn dochter van zeventien", "kind van 8", "mijn zoon is 12", "zoon wordt over een maand 18"
    (re.compile(
        rf"\b(?:{_RELATIVE})\s+(?:(?:is|wordt|werd|was)\s+{_SOON}|van\s+)(?:(?:pas|net|al|bijna)\s+)?"
        rf"(?P<n>{_NUM})(?={_JAAR}\b)", re.IGNORECASE), "context"),
    # "dochter 14 jaar"
    (re.compile(rf"\b(?:{_RELATIVE})\s+(?P<n>{_NUM})(?=\s*(?:jaar|jr)\b)", re.IGNORECASE), "context"),
    # "ik ben 42", "ze wordt 16", "hij is bijna 18 jaar"
    (re.compile(
        rf"\b(?:{_SUBJECT})\s+(?:{_VERB})\s+{_SOON}(?:(?:al|bijna|net|pas|nu|inmiddels|dan|straks)\s+)*"
        rf"(?P<n>{_NUM})(?={_JAAR}\b)", re.IGNORECASE), "context"),
    # "als je 16 bent", "als ik 18 word", "wanneer hij 65 is"
    (re.compile(
        rf"\b(?:als|wanneer|nu|omdat|want|zodra|tot|totdat)\s+(?:ik|je|jij|u|hij|zij|ze|het\s+kind|"
        rf"(?:mijn|mn|m'n|onze|ons)\s+(?:{_RELATIVE}))\s+(?:al\s+|bijna\s+|nog\s+)?(?P<n>{_NUM})(?:\s*(?:jaar|jr))?"
        rf"\s+(?:ben|bent|is|word|wordt|worden|was|zijn)\b", re.IGNORECASE), "context"),
    # "ben 42 jaar", "ik ben zeventien"
    (re.compile(rf"\b(?:ben|leeftijd(?:\s+is|:)?|leeftijd\s+van)\s+(?P<n>{_NUM})(?={_JAAR}\b)", re.IGNORECASE),
     "context"),
    # "42 jaar", "17 jr oud" (not "10 jaar geldig", "over 5 jaar")
    (re.compile(rf"\b(?P<n>{_NUM})\s?(?:jaar|jr|jaartjes)\b", re.IGNORECASE), "years"),
    # "onder de 18", "jonger dan 18", "ouder dan 65", "boven de 65", "vanaf 18 jaar"
    (re.compile(rf"\b(?P<op>onder(?:\s+de)?|jonger\s+dan|beneden\s+de)\s+(?P<n>{_NUM})(?={_JAAR}\b)", re.IGNORECASE),
     "below"),
    (re.compile(rf"\b(?P<op>boven\s+de|ouder\s+dan)\s+(?P<n>{_NUM})(?={_JAAR}\b)", re.IGNORECASE), "above"),
    (re.compile(rf"\b(?P<op>vanaf|tot)\s+(?P<n>{_NUM})\s?(?:jaar|jr)\b", re.IGNORECASE), "from"),
    # a message that is only an age: "17", "zeventien", "17 jaar"
    (re.compile(rf"^\s*(?P<n>{_NUM})(?:\s*(?:jaar|jr)(?:\s+oud)?)?\s*[.!?]*\s*$", re.IGNORECASE), "alone"),
]
_WORDS = [
    (re.compile(r"\b(?:volwassen(?:e|en)?|meerderjarig(?:e|en)?)\b", re.IGNORECASE), "18"),
    (re.compile(r"\bminderjarig(?:e|en)?\b", re.IGNORECASE), "17"),
]


# Cheap test first: no digit, number word or age word means no age.
_MAYBE_AGE = re.compile(
    r"\d|twee|drie|vier|vijf|zes|zeven|acht|negen|tien|elf|twaalf|tig|honderd|volwassen|jarig|"
    r"(?:een|twee|drie|vier|vijf|zes|zeven|acht|negen)[eë]n",
    re.IGNORECASE,
)


def _overlaps(start: int, end: int, spans: Iterable[Tuple[int, int]]) -> bool:
    return any(start < b and a < end for a, b in spans)


def find_ages(text: str, blocked: Sequence[Tuple[int, int]] = ()) -> List[Span]:
    """Age spans in ``text``; ``blocked`` are spans of phone numbers, BSNs and the like."""
    if not text or not _MAYBE_AGE.search(text):
        return []
    found: List[Span] = []
    for pattern, kind in _PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span("n")
            value = number_value(match.group("n"))
            if value is None or _overlaps(start, end, blocked):
                continue
            after = text[end:]
            if kind in ("plus", "jarig"):
                end = match.end()
            elif kind == "years":
                tail = text[match.end():]
                if re.match(rf"\s+(?:{_DURATION_AFTER})\b", tail, re.IGNORECASE):
                    continue
                if _DURATION_BEFORE.search(text[:start]):
                    continue
            elif kind in ("context", "below", "above", "alone"):
                if not re.match(r"\s*(?:jaar|jr)\b", after, re.IGNORECASE) and _NOT_AGE_AFTER_RE.match(after):
                    continue
                if kind == "context" and re.match(rf"\s*(?:jaar|jr)\s+(?:{_DURATION_AFTER})\b", after,
                                                  re.IGNORECASE):
                    continue
            if kind == "below":
                value -= 1
            elif kind == "above":
                value += 1
            elif kind == "from" and match.group("op").lower() == "tot":
                value -= 1
            if 0 <= value <= 120:
                found.append((start, end, str(value)))
    for pattern, value in _WORDS:
        for match in pattern.finditer(text):
            found.append((match.start(), match.end(), value))
    return _longest_first(found)


def _longest_first(spans: List[Span]) -> List[Span]:
    chosen: List[Span] = []
    for span in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
        if not _overlaps(span[0], span[1], [(a, b) for a, b, _ in chosen]):
            chosen.append(span)
    return sorted(chosen)


def age_value(raw: Optional[str]) -> Optional[int]:
    """An age from an entity or slot value: "17", "18+", "zeventien", "65-plusser",
    "volwassene", "mn dochter van 12". None when there is no age in it."""
    if raw is None:
        return None
    raw = str(raw).strip()
    if not raw:
        return None
    direct = number_value(raw)
    if direct is None:
        match = re.fullmatch(r"(\d{1,3})\s*(?:\+|jaar|jr|-?\s?plus(?:ser|sers)?|-?\s?jarige?)?", raw, re.IGNORECASE)
        direct = int(match.group(1)) if match else None
    if direct is None:
        spans = find_ages(raw)
        direct = int(spans[0][2]) if spans else None
    return direct if direct is not None and 0 <= direct <= 120 else None
