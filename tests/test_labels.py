"""appcare/labels.yml, the short citizen texts of the actions and channels (issue 20):
every key the code asks for is in the file and every key in the file is used; the file
holds no whole sentences (those are responses in domain/*.yml); English labels are
English; a broken file or a missing key stops the start with an error that names the key
and the file. The house style of the Dutch labels (form of address "je", "ID-kaart",
button titles of at most 20 characters) is checked with every other citizen text in
tests/test_citizen_texts.py.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest

from appcare import labels
from tests.test_citizen_texts import _dutch_sentence
from tests.test_response_languages import DUTCH_WORDS

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("actions", "channels", "appcare", "desk", "report", "tools")
LOOKUPS = {"text", "per_language", "group"}
# Labels that read like a sentence but are a fragment of the WhatsApp list layout.
SENTENCE_LIKE = {"whatsapp_list.more_options"}


def label_calls() -> Tuple[Dict[str, Set[str]], Dict[str, Set[str]], list]:
    """({key: {where}}, {group prefix: {where}}, [calls whose key is no literal])."""
    keys: Dict[str, Set[str]] = {}
    prefixes: Dict[str, Set[str]] = {}
    not_literal = []
    for directory in CODE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            if where == "appcare/labels.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                func = node.func if isinstance(node, ast.Call) else None
                if not (isinstance(func, ast.Attribute) and func.attr in LOOKUPS
                        and isinstance(func.value, ast.Name) and func.value.id == "labels"):
                    continue
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    not_literal.append(f"{where}:{node.lineno}")
                    continue
                target = prefixes if func.attr == "group" else keys
                target.setdefault(first.value, set()).add(f"{where}:{node.lineno}")
    return keys, prefixes, not_literal


def test_every_label_the_code_uses_is_in_the_file_and_every_label_is_used():
    keys, prefixes, not_literal = label_calls()
    assert not not_literal, f"write the label key as a literal (this test finds the keys so): {not_literal}"
    in_file = set(labels.load())
    missing = {key: sorted(where) for key, where in keys.items() if key not in in_file}
    assert not missing, f"add these keys to appcare/labels.yml: {missing}"
    empty_groups = {p: sorted(w) for p, w in prefixes.items() if not any(k.startswith(p + ".") for k in in_file)}
    assert not empty_groups, f"no labels for these groups in appcare/labels.yml: {empty_groups}"
    used = set(keys) | {key for key in in_file for prefix in prefixes if key.startswith(prefix + ".")}
    unused = sorted(in_file - used)
    assert not unused, f"labels no code uses (remove them from appcare/labels.yml): {unused}"
    assert keys and prefixes  # the scan found the lookups


def test_labels_are_no_whole_sentences():
    sentences = {key: texts["nl"] for key, texts in labels.load().items()
                 if key not in SENTENCE_LIKE and _dutch_sentence(texts["nl"])}
    assert not sentences, f"a whole message belongs in a response of domain/*.yml: {sentences}"


def test_english_labels_have_no_dutch_words():
    wrong = {}
    for key, texts in labels.load().items():
        if "en" in texts:
            words = set(re.findall(r"[^\W\d_]+", texts["en"].lower())) - {"part", "year"}
            if words & DUTCH_WORDS:
                wrong[key] = texts["en"]
    assert not wrong


def test_the_moved_texts_are_unchanged():
    """A few of the texts as the citizen knew them before they moved (issue 20)."""
    from actions.conversation import EN_INTENT_TITLES, INTENT_TITLES
    from actions.passport_id import DOCUMENT_NAMES
    from channels import formatting

    assert INTENT_TITLES["passport_fees"] == "Kosten paspoort/ID" and len(INTENT_TITLES) == 21
    assert EN_INTENT_TITLES["roadworks_duration"] == "How long?" and list(EN_INTENT_TITLES) == list(INTENT_TITLES)
    assert DOCUMENT_NAMES == {"paspoort": "paspoort", "id_kaart": "ID-kaart"}
    assert formatting.MORE_OPTIONS_INTRO == "Meer keuzes (typ wat je kiest):"
    assert labels.text("hours.and") == " en " and labels.text("handoff.on_number", "en") == " on the number you gave"


# ------------------------------------------------------------------ errors
def test_a_missing_key_or_language_names_the_key_and_the_file():
    with pytest.raises(labels.LabelError, match=r"'hours\.nope' is missing in .*labels\.yml"):
        labels.text("hours.nope")
    with pytest.raises(labels.LabelError, match=r"'failure\.no_phone' has no 'en' text in .*labels\.yml"):
        labels.per_language("failure.no_phone")
    with pytest.raises(labels.LabelError, match=r"no labels nope\.\* in .*labels\.yml"):
        labels.group("nope")


@pytest.mark.parametrize("text, problem", [
    ("a.b:\n  nl: x\na.b:\n  nl: y\n", r"'a\.b' appears twice"),
    ("a.b:\n  en: only English\n", r"'a\.b' needs .* Dutch"),
    ("a.b:\n  nl: x\n  de: y\n", r"'a\.b' has language 'de'"),
    ("a.b:\n  nl: ''\n", r"'a\.b' \(nl\) is empty"),
    ("Not A Key:\n  nl: x\n", r"'Not A Key' is not of the form"),
    ("- a\n- b\n", r"expected a mapping"),
    ("a.b: [\n", r"cannot read"),
])
def test_a_broken_file_is_refused_with_the_file_and_key(tmp_path, text, problem):
    path = tmp_path / "labels.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(labels.LabelError, match=problem) as error:
        labels.load(path)
    assert str(path) in str(error.value)


def test_the_shipped_file_is_valid():
    loaded = labels.load()
    assert all("nl" in texts for texts in loaded.values())


def test_validate_content_reports_a_broken_labels_file(tmp_path, monkeypatch, capsys):
    from tools import validate_content

    assert validate_content.main() == 0
    assert "labels: OK" in capsys.readouterr().out
    broken = tmp_path / "labels.yml"
    broken.write_text("button.colleague:\n  en: Colleague\n", encoding="utf-8")
    monkeypatch.setattr(labels, "LABELS_FILE", broken)
    assert validate_content.main() == 1
    out = capsys.readouterr().out
    assert "ERROR in the labels" in out and "'button.colleague'" in out and str(broken) in out
