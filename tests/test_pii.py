"""Masking of Dutch personal data in citizen text."""
from __future__ import annotations

import pytest

from appcare.pii import conversation_hash, is_valid_bsn, mask

CASES = [
    ("mijn bsn is 123456782", "123456782"),
    ("bsn 1234.56.782 graag", "1234.56.782"),
    ("bel me op 06-12345678", "06-12345678"),
    ("mijn nummer +31 6 1234 5678", "+31 6 1234 5678"),
    ("of 0031612345678", "0031612345678"),
    ("vast nummer 0115 455490", "0115 455490"),
    ("mail naar jan.jansen@example.nl", "jan.jansen@example.nl"),
    ("ik woon op 4331 AB 12", "4331 AB 12"),
    ("adres Kerkstraat 12a in Axel", "Kerkstraat 12a"),
    ("mijn naam is Piet de Vries", "Piet de Vries"),
    ("rekening NL91 ABNA 0417 1643 00", "NL91 ABNA 0417 1643 00"),
    ("geboren 12-03-1980", "12-03-1980"),
]


@pytest.mark.parametrize("text,secret", CASES)
def test_personal_data_is_masked(text, secret):
    masked = mask(text)
    assert secret not in masked
    assert "[" in masked


@pytest.mark.parametrize("text", [
    "wat kost een paspoort in 2023 en ik ben 12 jaar",
    "zijn jullie open van 08:30-17:00 op 27 april",
    "is de Larserdreef nog afgesloten",
])
def test_ordinary_text_is_left_alone(text):
    assert mask(text) == text


def test_bsn_elfproef_and_hash():
    assert is_valid_bsn("123456782") and not is_valid_bsn("123456789")
    assert conversation_hash("31612345678") != "31612345678" and len(conversation_hash("x")) == 12
