"""Masks personal data in citizen text (AVG): BSN, phone numbers, e-mail, IBAN,
postcode with house number, street and number, dates of birth and names where
they are recognisable (after an introduction, a title or in a signature).

Used for ticket transcripts, the editors' "not understood" inbox and reports.
Logs never contain message text at all (see appcare.ops.logging_setup).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable, List, Optional, Tuple

from appcare.secrets import pseudonym_key

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}\s?[A-Z]{4}(?:\s?\d{4}){2}\s?\d{2}\b", re.IGNORECASE)
# Dutch mobile and landline numbers in the common notations, and international ones.
_PHONE = re.compile(
    r"(?<![\w])(?:(?:\+|00)\d{2}[\s-]?(?:\(0\))?[\s-]?\d(?:[\s-]?\d){7,10}"
    r"|0\d(?:[\s-]?\d){8}"
    r"|0\d{2,3}[\s-]\d{6,7})(?![\w])"
)
_BSN_LIKE = re.compile(
    r"(?<!\d)\d{4}[\s.-]\d{2}[\s.-]\d{3}(?!\d)"
    r"|(?<!\d)\d{3}[\s.-]\d{2}[\s.-]\d{2}[\s.-]\d{2}(?!\d)"
    r"|(?<!\d)\d{8,9}(?!\d)"
)
_POSTCODE_NR = re.compile(
    r"\b[1-9]\d{3}\s?(?!SA|SD|SS)[A-Z]{2}\b(?:[\s,]+\d{1,5}(?:[a-zA-Z]\b)?)?"
    r"|\b[1-9]\d{3}\s?[a-zA-Z]{2}[\s,]+\d{1,5}(?:[a-zA-Z]\b)?"
)
_STREET_NR = re.compile(
    r"\b([A-Z][a-z]+(?:straat|laan|weg|dreef|plein|kade|dijk|gracht|hof|singel|pad|steeg))\s+\d{1,5}(?:[a-zA-Z]\b)?"
)
_PARTICLES = r"(?:van der|van den|van de|van|de|der|den|ter|ten|te|la|le|el|al|bin|op de|in 't|'t)"
# Capitalised names after the usual introductions ("ik ben Fatima", "met Jan de Vries").
_NAME_INTRO = re.compile(
    rf"\b((?:mijn naam is|ik ben|ik heet|heet|naam:|met)\s+)"
    rf"((?:[A-Z][a-zé'-]+)(?:\s+{_PARTICLES}\b)*(?:\s+[A-Z][a-zé'-]+){{0,2}})"
)
# Chat forms: lower-case names after "mijn naam is", titles (dhr., mevrouw),
# signatures ("mvg Kees") and phone numbers with the area code in brackets.
_STOP = {
    "en", "ik", "wil", "graag", "heb", "is", "uit", "woon", "wat", "hoe", "kan", "mijn", "maar", "want",
    "dus", "of", "in", "op", "bij", "hier", "hoi", "hallo", "dag", "met", "voor", "over", "een",
}
_NAME_TOKEN = r"[A-Za-zÀ-ÿ][a-zà-ÿ'’-]+"
_CAP_TOKEN = r"[A-ZÀ-Þ][a-zà-ÿ'’-]+"
_LOWER_INTRO = re.compile(
    rf"\b((?:mijn naam is|ik heet|naam\s*:)\s+)((?:{_NAME_TOKEN})(?:\s+(?:{_PARTICLES}\s+)?{_NAME_TOKEN}){{0,2}})",
    re.IGNORECASE,
)
_TITLE = re.compile(
    rf"\b((?i:dhr|mevr|mw|mr|drs|ir|dr)\.?\s+|(?i:de heer|meneer|mevrouw|juffrouw)\s+)"
    rf"((?:[A-Z]\.\s?)*(?:{_PARTICLES}\s+)?{_CAP_TOKEN}(?:\s+(?:{_PARTICLES}\s+)?{_CAP_TOKEN})?)"
)
_SIGNATURE = re.compile(
    rf"\b((?i:(?:met\s+)?(?:vriendelijke\s+)?(?:groet(?:en|jes)?|gr\.?|mvg|m\.v\.g\.?))\s*[,:.]?\s+)"
    rf"((?:(?i:dhr|mevr|mw|mevrouw|meneer)\.?\s+)?(?:[A-Z]\.\s?)*(?:{_PARTICLES}\s+)?{_CAP_TOKEN}"
    rf"(?:\s+(?:{_PARTICLES}\s+)?{_CAP_TOKEN}){{0,2}})"
)
_PHONE_PARENS = re.compile(r"\(0\d{1,3}\)\s?\d{2,4}[\s-]?\d{2}[\s-]?\d{2,3}\b")
_HOUSE_NUMBER = re.compile(r"\b(huisnummer|huisnr\.?|huis nr\.?)\s*:?\s*\d{1,5}\s?[a-zA-Z]?\b", re.IGNORECASE)
_ADDRESS_RUN = re.compile(r"\[adres\](?:,?\s*\[adres\])+")
_DATE_OF_BIRTH = re.compile(r"\b(geboren(?: op)?|geboortedatum:?)\s+\d{1,2}[-/ ]\d{1,2}[-/ ]\d{2,4}\b", re.IGNORECASE)

PLACEHOLDERS = {
    "bsn": "[BSN]",
    "phone": "[telefoon]",
    "email": "[e-mail]",
    "iban": "[IBAN]",
    "address": "[adres]",
    "name": "[naam]",
    "dob": "[geboortedatum]",
}


def _lower_name_sub(match: "re.Match[str]") -> str:
    """Masks a (possibly lower-case) name after "mijn naam is"; stops at ordinary words
    so that "mijn naam is jan en ik wil ..." keeps "en ik wil"."""
    kept: List[str] = []
    for token in match.group(2).split():
        if token.lower() in _STOP:
            break
        kept.append(token)
    if not kept:
        return match.group(0)
    rest = match.group(2)[len(" ".join(kept)):]
    return f"{match.group(1)}{PLACEHOLDERS['name']}{rest}"


def mask(text: str, keep_names: Iterable[str] = ()) -> str:
    """Returns the text with personal data replaced by placeholders. ``keep_names``
    (e.g. the staff member who wrote a note) are names that stay as written."""
    if not text:
        return text
    kept = [n for n in dict.fromkeys(n.strip() for n in keep_names) if len(n) >= 2]
    if kept:
        originals: List[str] = []  # the kept names as written, behind markers no pattern matches

        def hide(match: "re.Match[str]") -> str:
            originals.append(match.group(0))
            return f"\x00{len(originals) - 1}\x00"

        pattern = "|".join(re.escape(n) for n in sorted(kept, key=len, reverse=True))
        out = mask(re.sub(rf"(?<!\w)(?:{pattern})(?!\w)", hide, text, flags=re.IGNORECASE))
        return re.sub(r"\x00(\d+)\x00", lambda m: originals[int(m.group(1))], out)
    name = PLACEHOLDERS["name"]
    out = _EMAIL.sub(PLACEHOLDERS["email"], text)
    out = _IBAN.sub(PLACEHOLDERS["iban"], out)
    out = _DATE_OF_BIRTH.sub(lambda m: f"{m.group(1)} {PLACEHOLDERS['dob']}", out)
    out = _PHONE_PARENS.sub(PLACEHOLDERS["phone"], out)
    out = _PHONE.sub(PLACEHOLDERS["phone"], out)
    out = _BSN_LIKE.sub(PLACEHOLDERS["bsn"], out)
    out = _POSTCODE_NR.sub(PLACEHOLDERS["address"], out)
    out = _STREET_NR.sub(PLACEHOLDERS["address"], out)
    out = _HOUSE_NUMBER.sub(PLACEHOLDERS["address"], out)
    out = _ADDRESS_RUN.sub(PLACEHOLDERS["address"], out)
    out = _LOWER_INTRO.sub(_lower_name_sub, out)
    out = _TITLE.sub(lambda m: f"{m.group(1)}{name}", out)
    out = _SIGNATURE.sub(lambda m: f"{m.group(1)}{name}", out)
    out = _NAME_INTRO.sub(lambda m: f"{m.group(1)}{name}", out)
    return out


def is_valid_bsn(digits: str) -> bool:
    """The 'elfproef' for a BSN."""
    digits = re.sub(r"\D", "", digits)
    if len(digits) == 8:
        digits = "0" + digits
    if len(digits) != 9:
        return False
    weights = [9, 8, 7, 6, 5, 4, 3, 2, -1]
    return sum(int(d) * w for d, w in zip(digits, weights)) % 11 == 0


def pseudonym(value: Optional[str], length: int = 12) -> str:
    """Keyed pseudonym of an identifier: the first ``length`` hex characters of
    HMAC-SHA256 with :func:`appcare.secrets.pseudonym_key`.

    The only way pseudonyms of senders (and message ids) are made: logs, the
    ``sender_hash``/``recipient_hash`` columns and the event stream. An unkeyed hash of a phone number is no pseudonym (Dutch mobile numbers
    are ~10^8, tried in seconds); without the key this one cannot be reversed. All
    components of an installation share the key (``APPCARE_PSEUDONYM_KEY``), so the
    same sender gets the same pseudonym everywhere. In production without the key
    this raises :class:`appcare.secrets.SecretError`.
    """
    digest = hmac.new(pseudonym_key(), (value or "").encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:length]


def conversation_hash(sender_id: Optional[str]) -> str:
    """Short, stable pseudonym of a sender for logs and ``sender_hash`` columns (never
    log the number itself); see :func:`pseudonym`."""
    return pseudonym(sender_id, 12)


def number_spans(text: str) -> List[Tuple[int, int]]:
    """Character spans of phone numbers, BSNs, IBANs and postcodes with house number in
    a text: digits inside them are no age, date or amount (``06-12345678`` is not "6")."""
    spans: List[Tuple[int, int]] = []
    for pattern in (_IBAN, _PHONE_PARENS, _PHONE, _BSN_LIKE, _POSTCODE_NR):
        spans.extend(match.span() for match in pattern.finditer(text or ""))
    return spans


def phone_numbers(text: str) -> List[str]:
    """Phone numbers written in a text, in order ("bel me op 06-12345678")."""
    found = []
    for pattern in (_PHONE_PARENS, _PHONE):
        found.extend((match.start(), match.group(0).strip()) for match in pattern.finditer(text or ""))
    return [number for _, number in sorted(found)]


def findings(text: str) -> List[Tuple[str, str]]:
    """Kinds of personal data found in a text (for tests and the log audit)."""
    found = []
    for kind, pattern in (("email", _EMAIL), ("iban", _IBAN), ("phone", _PHONE), ("bsn", _BSN_LIKE)):
        for match in pattern.finditer(text or ""):
            found.append((kind, match.group(0)))
    return found
