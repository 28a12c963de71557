"""Entity synonyms of the NLU (data/nlu/synonyms.yml) for the actions: the same
canonical value for a spelling that Rasa's EntitySynonymMapper gives, also for a
value that reaches an action unmapped (an entity from a slot, a button payload).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict

from ruamel.yaml import YAML

SYNONYMS_FILE = Path(__file__).resolve().parent.parent / "data" / "nlu" / "synonyms.yml"


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Dict[str, str]:
    data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
    mapping: Dict[str, str] = {}
    for item in data.get("nlu") or []:
        if not isinstance(item, dict) or "synonym" not in item:
            continue
        value = str(item["synonym"])
        mapping[value.lower()] = value
        for line in str(item.get("examples") or "").splitlines():
            example = line.strip()
            if example.startswith("- "):
                mapping[example[2:].strip().lower()] = value
    return mapping


def synonyms(path: Path = SYNONYMS_FILE) -> Dict[str, str]:
    """Every spelling (lower case) and every canonical value -> the canonical value;
    read again when the file changes."""
    return _load(str(path), Path(path).stat().st_mtime)


def canonical(value: str, path: Path = SYNONYMS_FILE) -> str:
    """The canonical value of ``value`` (case-insensitive), else ``value`` in lower case."""
    text = (value or "").strip().lower()
    return synonyms(path).get(text, text)
