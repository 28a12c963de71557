"""The short citizen texts of appcare/labels.yml (button titles, list labels, parts of
sentences), read once and checked when first used.

The actions and the WhatsApp channel read their labels into module constants when they
are imported, so a missing key or language stops the action server or the channel at
start-up with a :class:`LabelError` that names the key and the file, not a citizen's
turn later on.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional

import yaml

LABELS_FILE = Path(__file__).with_name("labels.yml")
LANGUAGES = ("nl", "en")  # the languages the assistant answers in (actions.base.ANSWER_LANGUAGES)
_KEY = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")

_cache: Dict[Path, Dict[str, Dict[str, str]]] = {}


class LabelError(Exception):
    """appcare/labels.yml is broken or lacks a key or language the code asks for."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A key written twice is an error (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise LabelError(f"label {key!r} appears twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """{key: {language: text}} of ``path`` (default appcare/labels.yml); raises LabelError
    naming the file (and key) when the file cannot be read, is no mapping of keys to
    texts per language, or a key lacks Dutch."""
    path = path or LABELS_FILE
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except LabelError as exc:
        raise LabelError(f"{path}: {exc}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise LabelError(f"{path}: cannot read the labels ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise LabelError(f"{path}: expected a mapping of label keys to texts per language")
    labels: Dict[str, Dict[str, str]] = {}
    for key, texts in data.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise LabelError(f"{path}: label key {key!r} is not of the form 'group.name'")
        if not isinstance(texts, dict) or "nl" not in texts:
            raise LabelError(f"{path}: label {key!r} needs a mapping with at least the Dutch text (nl: ...)")
        for lang, text in texts.items():
            if lang not in LANGUAGES:
                raise LabelError(f"{path}: label {key!r} has language {lang!r}; allowed: {', '.join(LANGUAGES)}")
            if not isinstance(text, str) or not text.strip():
                raise LabelError(f"{path}: label {key!r} ({lang}) is empty or not a text")
        labels[key] = dict(texts)
    return labels


def labels(path: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """The labels of ``path`` (default appcare/labels.yml), read once."""
    path = path or LABELS_FILE
    if path not in _cache:
        _cache[path] = load(path)
    return _cache[path]


def text(key: str, lang: str = "nl") -> str:
    """The text of ``key`` in ``lang``; LabelError naming the key and the file when missing."""
    entry = labels().get(key)
    if entry is None:
        raise LabelError(f"label {key!r} is missing in {LABELS_FILE}")
    if lang not in entry:
        raise LabelError(f"label {key!r} has no {lang!r} text in {LABELS_FILE}")
    return entry[lang]


def per_language(key: str) -> Dict[str, str]:
    """{"nl": ..., "en": ...} of ``key``: every answer language must have its text."""
    return {lang: text(key, lang) for lang in LANGUAGES}


def group(prefix: str, lang: str = "nl") -> Dict[str, str]:
    """{name: text} of every key ``prefix.name`` (e.g. the button titles per intent)."""
    found = {key[len(prefix) + 1:]: key for key in labels() if key.startswith(prefix + ".")}
    if not found:
        raise LabelError(f"no labels {prefix}.* in {LABELS_FILE}")
    return {name: text(key, lang) for name, key in found.items()}
