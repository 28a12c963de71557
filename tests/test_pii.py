"""Masking of Dutch personal data in citizen text (ticket transcripts, the editors'
not-understood inbox, report examples all use ``appcare.pii.mask``)."""
from __future__ import annotations

import pytest

from appcare.pii import conversation_hash, is_valid_bsn, mask

# (citizen text, what must not be visible any more, placeholder that must appear)
PERSONAL_DATA = [
    # BSN, with and without separators
    ("mijn bsn is 123456782", "123456782", "[BSN]"),
    ("BSN: 1234.56.782 graag status", "1234.56.782", "[BSN]"),
    ("burgerservicenummer 111 22 33 33", "111 22 33 33", "[BSN]"),
    # phone numbers: mobile, international, landline, area code in brackets
    ("bel me op 06-12345678", "12345678", "[telefoon]"),
    ("mijn nummer is 0612345678", "0612345678", "[telefoon]"),
    ("bereikbaar op +31 6 12345678", "12345678", "[telefoon]"),
    ("mijn nummer +31 6 1234 5678", "1234 5678", "[telefoon]"),
    ("of 0031 6 1234 5678", "1234 5678", "[telefoon]"),
    ("of 0031612345678", "0031612345678", "[telefoon]"),
    ("vast nummer 010-1234567", "1234567", "[telefoon]"),
    ("vast nummer 0115 455490", "455490", "[telefoon]"),
    ("vast nummer (0115) 123456", "123456", "[telefoon]"),
    ("bel (010) 123 45 67 na 17 uur", "123 45 67", "[telefoon]"),
    # e-mail and IBAN
    ("mail naar jan.devries@gmail.com", "devries", "[e-mail]"),
    ("rekening NL91 ABNA 0417 1643 00", "0417", "[IBAN]"),
    # addresses: postcode + house number, street + number, house number on its own
    ("ik woon op 4531 AB 12", "4531", "[adres]"),
    ("postcode 4531AB, huisnummer 5", "4531", "[adres]"),
    ("postcode 8232 zx 2a", "8232", "[adres]"),
    ("ik woon Kerkstraat 12 in Terneuzen", "Kerkstraat 12", "[adres]"),
    ("adres Kerkstraat 12a in Axel", "Kerkstraat 12a", "[adres]"),
    ("huisnummer: 14b", "14b", "[adres]"),
    # names: introductions (also lower case and with particles), titles, signatures
    ("mijn naam is Jan de Vries", "Vries", "[naam]"),
    ("mijn naam is jan de vries en ik wil een paspoort", "vries", "[naam]"),
    ("ik heet Piet van der Berg", "Berg", "[naam]"),
    ("ik heet Piet van der Berg en ik woon in Axel", "Berg", "[naam]"),
    ("ik ben Fatima", "Fatima", "[naam]"),
    ("u spreekt met Jan de Vries", "Vries", "[naam]"),
    ("mijn dochter heet Daan", "Daan", "[naam]"),
    ("Met vriendelijke groet, Anna Jansen", "Jansen", "[naam]"),
    ("mvg Kees", "Kees", "[naam]"),
    ("Met vriendelijke groet, mevr. Verhage", "Verhage", "[naam]"),
    ("Dhr. Jansen hier, vraagje", "Jansen", "[naam]"),
    ("namens mevrouw De Wit", "Wit", "[naam]"),
    # date of birth
    ("geboren 12-03-1980", "1980", "[geboortedatum]"),
    ("geboren op 12-03-1985", "1985", "[geboortedatum]"),
]


@pytest.mark.parametrize("text,secret,placeholder", PERSONAL_DATA)
def test_personal_data_is_masked(text, secret, placeholder):
    masked = mask(text)
    assert secret not in masked, masked
    assert placeholder in masked, masked


def test_the_rest_of_the_sentence_stays_readable():
    assert mask("ik heet Piet van der Berg en ik woon in Axel") == "ik heet [naam] en ik woon in Axel"
    assert mask("mijn naam is jan en ik wil een paspoort") == "mijn naam is [naam] en ik wil een paspoort"
    assert mask("Hoi, ik ben Jan de Vries, 06-12345678, wat kost een paspoort?") == (
        "Hoi, ik ben [naam], [telefoon], wat kost een paspoort?")


@pytest.mark.parametrize("text", [
    "wat kost een paspoort in 2023 en ik ben 12 jaar",
    "zijn jullie open van 08:30-17:00 op 27 april",
    "is de Larserdreef nog afgesloten",
    "wat kost een paspoort",
    "ik ben ziek, kan ik later komen",
    "zijn jullie open op 2e kerstdag",
    "hoe laat gaat het Stadhuis open",
    "groetjes uit Terneuzen",
    "paspoort kwijt in Frankrijk wat nu",
    "hoe heet het formulier voor een uittreksel",
    "ik wil trouwen op 12 juni 2027",
])
def test_ordinary_text_is_left_alone(text):
    assert mask(text) == text


def test_bsn_elfproef_and_hash():
    assert is_valid_bsn("123456782") and not is_valid_bsn("123456789")
    assert conversation_hash("31612345678") != "31612345678" and len(conversation_hash("x")) == 12


# ------------------------------------------------------------------ keyed pseudonyms
KEY_A = "pseudonym-key-a-0123456789abcdef"
KEY_B = "pseudonym-key-b-fedcba9876543210"


def test_pseudonym_of_a_number_depends_on_the_key(monkeypatch):
    """A sender's pseudonym in logs, sender_hash columns and the route header cannot be
    reversed by hashing all ~10^8 Dutch mobile numbers: it is keyed."""
    import hashlib
    import hmac

    from appcare.pii import pseudonym

    monkeypatch.delenv("APPCARE_ENV", raising=False)
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_A)
    under_a = conversation_hash("31612345678")
    assert conversation_hash("31612345678") == under_a  # stable under one key
    assert under_a == pseudonym("31612345678") == hmac.new(
        KEY_A.encode(), b"31612345678", hashlib.sha256).hexdigest()[:12]
    assert under_a != hashlib.sha256(b"31612345678").hexdigest()[:12]  # not the unkeyed hash
    assert conversation_hash("31612345679") != under_a
    assert len(pseudonym("31612345678", 8)) == 8 and under_a.startswith(pseudonym("31612345678", 8))
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_B)
    assert conversation_hash("31612345678") != under_a


def test_whatsapp_message_ids_are_keyed_too(monkeypatch):
    import hashlib

    from channels.whatsapp import short_hash

    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_A)
    wamid = "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBI"  # base64 of the number inside
    under_a = short_hash(wamid)
    assert len(under_a) == 8 and under_a != hashlib.sha256(wamid.encode()).hexdigest()[:8]
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_B)
    assert short_hash(wamid) != under_a


def test_production_without_pseudonym_key_refuses(monkeypatch):
    from appcare.secrets import SecretError

    monkeypatch.setenv("APPCARE_ENV", "production")
    monkeypatch.delenv("APPCARE_PSEUDONYM_KEY", raising=False)
    with pytest.raises(SecretError, match="APPCARE_PSEUDONYM_KEY"):
        conversation_hash("31612345678")
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", "change-me")
    with pytest.raises(SecretError):
        conversation_hash("31612345678")


def test_development_key_is_generated_once_and_kept(monkeypatch, tmp_path):
    from appcare import secrets

    monkeypatch.delenv("APPCARE_ENV", raising=False)
    monkeypatch.delenv("APPCARE_PSEUDONYM_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    first = conversation_hash("31612345678")
    assert (tmp_path / "var" / "pseudonym.key").exists()
    secrets._pseudonym_key_cache.clear()  # a restart reads the same file
    assert conversation_hash("31612345678") == first


def test_a_note_keeps_its_writers_name_but_not_the_citizens_data(tmp_path) -> None:
    """Masking must not eat the staff member's own name (a signature in a note)."""
    from appcare.handoff_store import HandoffStore
    from appcare.pii import mask

    assert mask("Groet, Anna", keep_names=["anna"]) == "Groet, Anna"
    assert mask("Mijn naam is Piet Jansen, groet Anna", keep_names=["anna"]) == "Mijn naam is [naam], groet Anna"
    store = HandoffStore(f"sqlite:///{tmp_path}/notes.db")
    ticket = store.open_ticket("31600000001", "personal_case", "samenvatting", [], "terneuzen")
    store.append_message(ticket.id, "note", "Teruggebeld op 06-12345678, BSN 111222333. Groet, Anna",
                         staff_user="anna")
    text = store.get(ticket.id).messages[-1]["text"]
    assert text.endswith("Groet, Anna") and "12345678" not in text and "111222333" not in text
