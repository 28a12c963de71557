"""Dutch street names in chat text (entity ``street``).

A street is recognised by its street-type ending ("Vlietstraat", "Kennedylaan",
"Axelsedam", "Zonnebloemhof"), with or without house number, including names of
several words ("Prins Hendrikstraat", "Burgemeester Smeetslaan", "Vincent van
Goghstraat", "Grote Markt"). The value is the name without house number, capitalised
the Dutch way ("Vlietstraat", "IJsselmeerdijk", "Vincent van Goghstraat"); the
municipality's own street list (data/nlu/lookups/*_streets.yml) fixes the spelling
and adds its names without a street-type ending ("Oostelijk Bolwerk").

Ordinary Dutch words with such an ending ("snelweg", "fietspad", "kerkhof",
"supermarkt", "trouwring") are no street: they are in the Dutch word list of
spacy-lookups-data (the lemma table of the offline pipeline), most street names are
not. Such a word still counts when the citizen writes it as a name (capitalised within
a sentence, not in a German message) or with a house number ("Hoofdweg 4"), and a short
list of everyday street names that are also nouns ("stationsweg") always counts.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import yaml

Span = Tuple[int, int, str]
DEFAULT_LOOKUP_DIR = Path(__file__).resolve().parents[3] / "data" / "nlu" / "lookups"

SUFFIXES = (
    "straatje", "straat", "laantje", "laan", "weg", "dreef", "pleintje", "plein", "singel", "kade",
    "dijk", "hofje", "hof", "park", "pad", "steeg", "dam", "gracht", "baan", "markt", "ring",
    "boulevard", "erf", "wal", "veld", "passage", "promenade", "bolwerk",
)
# Words that belong to a street name before the word with the ending.
TITLES = {
    "prins", "prinses", "koning", "koningin", "keizer", "keizerin", "burgemeester", "burg.", "burg",
    "graaf", "gravin", "hertog", "hertogin", "jonkheer", "dokter", "dr.", "dr", "mr.", "mr", "ir.",
    "professor", "prof.", "prof", "pastoor", "pater", "kardinaal", "bisschop", "paus", "generaal",
    "kolonel", "kapitein", "admiraal", "luitenant", "president", "minister", "wethouder", "sint",
    "st.", "st", "madame", "meester", "mgr.", "mgr", "kanunnik", "dominee", "ds.", "zuster", "broeder",
    "oude", "nieuwe", "korte", "lange", "hoge", "lage", "grote", "kleine", "brede", "smalle",
    "noord", "zuid", "oost", "west", "noordelijk", "zuidelijk", "oostelijk", "westelijk",
    "noordelijke", "zuidelijke", "oostelijke", "westelijke", "noorder", "zuider", "ooster", "wester",
    "binnen", "buiten", "eerste", "tweede", "derde", "vierde", "1e", "2e", "3e", "4e", "1ste", "2de",
}
# Adjectives that make a street of a bare "Markt", "Weg", "Dijk" ("Grote Markt", "Hoge Dijk").
ADJECTIVES = {
    "oude", "nieuwe", "korte", "lange", "hoge", "lage", "grote", "kleine", "brede", "smalle",
    "noordelijk", "zuidelijk", "oostelijk", "westelijk", "noordelijke", "zuidelijke", "oostelijke",
    "westelijke", "eerste", "tweede", "1e", "2e",
}
PARTICLES = {"van", "de", "der", "den", "ter", "ten", "'t", "la", "le", "du", "von", "het", "des"}
_RING_PREFIXES = {"binnen", "buiten", "noord", "zuid", "oost", "west", "midden", "stads", "centrum"}
# Endings whose compounds in the Dutch word list are mostly common nouns ("snelweg",
# "fietspad", "loopbaan", "voetbalveld", "kerkhof", "supermarkt", "zijstraat"); compounds
# with the other endings ("eikenlaan", "zeedijk", "havendam") are mostly street names.
STRICT_SUFFIXES = {"weg", "pad", "baan", "veld", "park", "hof", "markt", "ring", "straat", "plein", "erf"}
# Street names that are also in the word list, and nouns that are not.
COMMON_STREET_NAMES = {
    "stationsweg", "stationsstraat", "stationsplein", "dorpsstraat", "dorpsplein", "kerkstraat",
    "kerkplein", "kerkpad", "kerkweg", "schoolstraat", "schoolweg", "molenweg", "molenstraat",
    "havenstraat", "havenweg", "havenplein", "marktstraat", "marktplein", "dijkweg", "dijkstraat",
    "parallelweg", "kanaalweg", "parkweg", "parkstraat", "parklaan", "nieuwstraat", "noordstraat",
    "zuidstraat", "ooststraat", "weststraat", "hoogstraat", "langstraat", "middenweg", "polderweg",
    "bosweg", "zeeweg", "veldweg", "hofstraat", "kerkhoflaan",
}
NOT_STREETS = {
    "milieustraat", "wasstraat", "autowasstraat", "afvalstraat", "winkelstraat", "woonstraat",
    "fietsstraat", "schoolplein", "speelplein", "parkeerplein", "bedrijvenpark", "ringweg", "rondweg",
    "snelweg", "onderweg", "halfweg", "zijweg", "omweg", "uitweg",
}
# A bare ending after an adjective is a street even in lower case ("lange dreef", "grote markt").
_BARE_AFTER_ADJECTIVE = {"dreef", "laan", "singel", "kade", "gracht", "dijk", "markt", "steeg", "wal"}
# Places that end like a street ("Rotterdam", "Barneveld").
PLACES = {
    "amsterdam", "rotterdam", "schiedam", "zaandam", "edam", "volendam", "leerdam", "monnickendam",
    "spaarndam", "appingedam", "veendam", "durgerdam", "barneveld", "hardinxveld", "wolphaartsdijk",
    "kruiningen", "zierikzee",
}
_HOUSE_NUMBER = re.compile(r"\s*,?\s*(?:nr\.?\s*|nummer\s+)?\d{1,4}\s?[a-zA-Z]?(?![\w-])")
_SENTENCE_END = re.compile(r"(?:^|[.!?\n:;]\s*)$")


def _suffix_lexicon() -> Set[str]:
    """Ordinary Dutch words with a street-type ending (spacy-lookups-data's Dutch lemma table)."""
    try:
        import spacy_lookups_data

        path = Path(spacy_lookups_data.__file__).parent / "data" / "nl_lemma_lookup.json.gz"
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            table: Dict[str, str] = json.load(handle)
    except (ImportError, OSError, ValueError):
        return set()
    words = set(table) | set(table.values())
    return {w.lower() for w in words if w.lower().endswith(SUFFIXES) or w.lower() in {"werf"}}


def _stop_words() -> Set[str]:
    try:
        from spacy.lang.nl.stop_words import STOP_WORDS

        return set(STOP_WORDS)
    except ImportError:  # pragma: no cover - spaCy is part of the Rasa pipeline
        return set()


def _lookup(directory: Path, pattern: str, name: str) -> List[str]:
    values: List[str] = []
    for path in sorted(directory.glob(pattern)):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for item in data.get("nlu") or []:
            if isinstance(item, dict) and item.get("lookup") == name:
                examples = item.get("examples") or ""
                values.extend(line.strip()[2:].strip() for line in examples.splitlines()
                              if line.strip().startswith("- "))
    return [v for v in values if v]


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


def dutch_capitalisation(name: str) -> str:
    """'vincent van goghstraat' -> 'Vincent van Goghstraat', 'ijsselmeerdijk' -> 'IJsselmeerdijk'."""
    out = []
    for index, word in enumerate(name.split()):
        lowered = word.lower()
        if index > 0 and lowered in PARTICLES:
            out.append(lowered)
        elif re.fullmatch(r"\d+(?:e|ste|de)", lowered):
            out.append(lowered)
        elif word[:1].isupper() and word[1:] != word[1:].lower() and not word.isupper():
            out.append(word)  # as typed: "McDonaldlaan", "IJsselstraat"
        elif lowered.startswith("ij"):
            out.append("IJ" + lowered[2:])
        else:
            out.append("-".join(part[:1].upper() + part[1:] for part in lowered.split("-")))
    return " ".join(out)


class StreetFinder:
    """Finds street names; build once (loads word lists), call ``find`` per message."""

    def __init__(self, lookup_dir: Optional[Path] = None) -> None:
        directory = Path(lookup_dir) if lookup_dir else DEFAULT_LOOKUP_DIR
        self.known: Dict[str, str] = {_key(n): n for n in _lookup(directory, "*streets*.yml", "street")}
        self.areas: Set[str] = {_key(n) for n in _lookup(directory, "areas*.yml", "area")}
        self.lexicon = _suffix_lexicon()
        self.stop = _stop_words()
        names = sorted(self.known.values(), key=len, reverse=True)
        self._known_re = re.compile(
            r"(?<![\w-])(?:" + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in names) + r")(?![\w-])",
            re.IGNORECASE,
        ) if names else None
        suffixes = "|".join(sorted(SUFFIXES, key=len, reverse=True))
        self._suffix_re = re.compile(
            rf"(?<![\w'’-])(?P<prefix>(?:[^\W\d_]|[-'’](?=[^\W\d_]))*?)(?P<suffix>{suffixes})(?![\w'’-])",
            re.IGNORECASE,
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _at_sentence_start(text: str, start: int) -> bool:
        return bool(_SENTENCE_END.search(text[:start]))

    def _has_number(self, text: str, end: int) -> bool:
        return bool(_HOUSE_NUMBER.match(text, end))

    def _is_name_word(self, text: str, start: int, word: str, trust_capitals: bool = True) -> bool:
        """A capitalised word inside a sentence that is not a function word ("Hendrik")."""
        return (trust_capitals and word[:1].isupper() and word.lower() not in self.stop and word.isalpha()
                and not self._at_sentence_start(text, start))

    def _preceding(self, text: str, start: int) -> List[Tuple[int, str]]:
        """Up to four words right before ``start`` (nearest first), stopping at punctuation."""
        words: List[Tuple[int, str]] = []
        position = start
        for _ in range(4):
            before = text[:position]
            match = re.search(r"(\S+)\s+$", before)
            if not match:
                break
            word = match.group(1)
            if re.search(r"[,;:!?()\"]$", word) or (word.endswith(".") and word.lower() not in TITLES):
                break
            words.append((match.start(1), word))
            position = match.start(1)
        return words

    def _extend(self, text: str, start: int, trust_capitals: bool = True) -> int:
        """Start of the whole name: titles, adjectives, first names and particles before it."""
        name_start = start
        pending: List[int] = []  # particles waiting for a name before them
        for position, word in self._preceding(text, start):
            lowered = word.lower()
            name_particle = lowered in {"van", "ter", "ten", "den", "der", "von"} and trust_capitals and (
                word[:1].isupper() and not self._at_sentence_start(text, position))
            if lowered in PARTICLES and not name_particle:
                pending.append(position)
                continue
            if name_particle:  # "de Van Steenbergenlaan": a capital "Van" starts the name
                name_start = position
                pending = []
                continue
            if lowered in TITLES or self._is_name_word(text, position, word, trust_capitals):
                name_start = position
                pending = []
                continue
            if pending and trust_capitals and word[:1].isupper() and word.isalpha() and lowered not in self.stop:
                # "Vincent van Goghstraat" at the start of a message
                name_start = position
                pending = []
                continue
            break
        return name_start

    def _value(self, name: str) -> str:
        known = self.known.get(_key(name))
        return known if known else dutch_capitalisation(re.sub(r"\s+", " ", name.strip()))

    # ------------------------------------------------------------------ finding
    def find(self, text: str, blocked: Sequence[Tuple[int, int]] = (), trust_capitals: bool = True) -> List[Span]:
        """Street spans (start, end, value); ``trust_capitals=False`` for languages that
        capitalise every noun (German), where a capital says nothing about a name."""
        if not text:
            return []
        found: List[Span] = []
        taken: List[Tuple[int, int]] = []
        if self._known_re is not None:
            for match in self._known_re.finditer(text):
                name = match.group(0)
                bare = _key(name).removeprefix("de ")
                if bare in SUFFIXES or bare == "werf":
                    # "Markt", "De Werf": only as a name or with a house number
                    if not (name[:1].isupper() and not self._at_sentence_start(text, match.start())
                            or self._has_number(text, match.end())):
                        continue
                start = self._extend(text, match.start(), trust_capitals)  # "Grote Markt", "Oude Noordstraat"
                name = text[start:match.end()]
                found.append((start, match.end(), self._value(name)))
                taken.append((start, match.end()))
        for match in self._suffix_re.finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b in taken):
                continue
            word = match.group(0)
            lowered = word.lower()
            prefix = match.group("prefix")
            suffix = match.group("suffix").lower()
            capital_name = trust_capitals and word[:1].isupper() and not self._at_sentence_start(text, start)
            numbered = self._has_number(text, end)
            if lowered in PLACES or _key(word) in self.areas or (lowered in NOT_STREETS and not capital_name):
                continue
            if not prefix:
                # a bare "Markt"/"Weg": only after an adjective ("Grote Markt", "lange dreef")
                before = self._preceding(text, start)
                if not (before and before[0][1].lower() in ADJECTIVES and (
                        (word[:1].isupper() and before[0][1][:1].isupper()) or suffix in _BARE_AFTER_ADJECTIVE)):
                    continue
                name_start = before[0][0]
            else:
                letters = re.sub(r"[^\w]", "", prefix)
                if len(letters) < 3 and not (capital_name and len(letters) >= 2):
                    continue
                if suffix == "ring" and not (letters.lower() in _RING_PREFIXES or capital_name):
                    continue
                if suffix == "erf" and not (capital_name or numbered):
                    continue
                if (suffix in STRICT_SUFFIXES and lowered in self.lexicon and lowered not in COMMON_STREET_NAMES
                        and not (capital_name or numbered)):
                    continue
                name_start = self._extend(text, start, trust_capitals)
            name = text[name_start:end]
            found.append((name_start, end, self._value(name)))
            taken.append((name_start, end))
        result = [s for s in found if not any(s[0] < b and a < s[1] for a, b in blocked)]
        return sorted(result)
