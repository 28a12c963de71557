"""Masks personal data in citizen text (AVG): BSN, phone numbers, e-mail, IBAN,
postcode with house number and names where they are recognisable.

Used for ticket transcripts, the editors' "not understood" inbox and reports.
Logs never contain message text at all (see appcare.logging_setup).
"""
from __future__ import annotations

import hashlib
import re
from typing import List, Tuple

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
_NAME_INTRO = re.compile(
    r"\b((?:mijn naam is|ik ben|ik heet|naam:|met)\s+)((?:[A-Z][a-zé'-]+)(?:\s+(?:van|de|der|den|ter|ten|te|van der|van den|la))*(?:\s+[A-Z][a-zé'-]+){0,2})"
)
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


def mask(text: str) -> str:
    """Returns the text with personal data replaced by placeholders."""
    if not text:
        return text
    out = _EMAIL.sub(PLACEHOLDERS["email"], text)
    out = _IBAN.sub(PLACEHOLDERS["iban"], out)
    out = _DATE_OF_BIRTH.sub(lambda m: f"{m.group(1)} {PLACEHOLDERS['dob']}", out)
    out = _PHONE.sub(PLACEHOLDERS["phone"], out)
    out = _BSN_LIKE.sub(PLACEHOLDERS["bsn"], out)
    out = _POSTCODE_NR.sub(PLACEHOLDERS["address"], out)
    out = _STREET_NR.sub(PLACEHOLDERS["address"], out)
    out = _NAME_INTRO.sub(lambda m: f"{m.group(1)}{PLACEHOLDERS['name']}", out)
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


def conversation_hash(sender_id: str) -> str:
    """Short, stable pseudonym of a sender for logs (never log the number itself)."""
    return hashlib.sha256((sender_id or "").encode("utf-8")).hexdigest()[:12]


def findings(text: str) -> List[Tuple[str, str]]:
    """Kinds of personal data found in a text (for tests and the log audit)."""
    found = []
    for kind, pattern in (("email", _EMAIL), ("iban", _IBAN), ("phone", _PHONE), ("bsn", _BSN_LIKE)):
        for match in pattern.finditer(text or ""):
            found.append((kind, match.group(0)))
    return found
