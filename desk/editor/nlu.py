"""Example questions (Rasa NLU training examples) for the content editors.

The examples stay in ``data/nlu/<topic>.yml`` in Rasa's own format: an ``intent:``
item with an ``examples: |`` literal block of ``- text`` lines. Editors add, change,
move and delete single lines of those blocks; everything else in the files
(comments, blank lines, synonyms, regexes, lookup tables, order) stays as it is.

Warnings (``similar``):

* **dubbel** – the same example (after normalising: lower case, no accents or
  punctuation, entity annotations reduced to their text) is already there;
* **lijkt op een ander onderwerp** – the example is close to an example of another
  intent: cosine similarity of character 3-grams (within words, like the
  ``char_wb`` CountVectorsFeaturizer) or Jaccard similarity of the word sets at or
  above the threshold (``APPCARE_EDITOR_SIMILARITY``, default 0.85).
"""
from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ruamel.yaml.scalarstring import LiteralScalarString

from desk.editor import yaml_edit
from desk.editor.content import EditorRefused

DEFAULT_THRESHOLD = 0.85
MAX_EXAMPLE_CHARS = 300
_ANNOTATION = re.compile(r"\[(?P<text>[^\]\[]+)\](?:\((?P<entity>[^)]+)\)|\{(?P<json>[^}]+)\})")
_EXAMPLE_LINE = re.compile(r"^(?P<prefix>\s*-\s+)(?P<text>.*?)\s*$")
_PLACEHOLDER = re.compile(r"\[(?:BSN|telefoon|e-mail|IBAN|adres|naam|geboortedatum)\]")
_write_lock = threading.Lock()


# ------------------------------------------------------------------ similarity
def plain_text(example: str) -> str:
    """The text of an example without entity annotations: [morgen](date_expr) -> morgen."""
    return _ANNOTATION.sub(lambda m: m.group("text"), example or "")


def normalise(example: str) -> str:
    text = unicodedata.normalize("NFKD", plain_text(example).lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w]+", " ", text, flags=re.UNICODE).replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


def char_ngrams(normalised: str, n: int = 3) -> Counter:
    grams: Counter = Counter()
    for word in normalised.split():
        padded = f" {word} "
        if len(padded) <= n:
            grams[padded] += 1
            continue
        for i in range(len(padded) - n + 1):
            grams[padded[i:i + n]] += 1
    return grams


def cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    if not dot:
        return 0.0
    return dot / (math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values())))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    a, b = set(a), set(b)
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def similarity(a: str, b: str) -> float:
    """Similarity of two examples in [0, 1]: the larger of char-3-gram cosine and word Jaccard."""
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return 1.0
    return max(cosine(char_ngrams(na), char_ngrams(nb)), jaccard(na.split(), nb.split()))


@dataclass
class Warning_:
    kind: str  # "duplicate" (same intent), "conflict" (same text, other intent), "similar"
    text: str  # the example it resembles
    intent: str
    score: float

    def message(self) -> str:
        if self.kind == "duplicate":
            return f"Dubbel: staat al bij {self.intent}: “{self.text}”"
        if self.kind == "conflict":
            return f"Dubbel: staat al bij een ander onderwerp ({self.intent}): “{self.text}”"
        return f"Lijkt op een voorbeeld van {self.intent} ({round(self.score * 100)}%): “{self.text}”"


class _Index:
    """Normalised texts and 3-gram vectors of every example, for similarity checks."""

    def __init__(self, examples: Sequence[Tuple[str, str]]):
        self.items = []
        for intent, text in examples:
            norm = normalise(text)
            grams = char_ngrams(norm)
            norm2 = math.sqrt(sum(v * v for v in grams.values())) or 1.0
            self.items.append((intent, text, norm, set(norm.split()), grams, norm2))
        self.by_gram: Dict[str, List[int]] = {}
        for index, item in enumerate(self.items):
            for gram in item[4]:
                self.by_gram.setdefault(gram, []).append(index)

    def similar(self, text: str, intent: str, threshold: float, skip: Optional[str] = None,
                limit: int = 3) -> List[Warning_]:
        norm = normalise(text)
        grams = char_ngrams(norm)
        words = set(norm.split())
        own_norm = math.sqrt(sum(v * v for v in grams.values())) or 1.0
        dots: Counter = Counter()
        for gram, count in grams.items():
            for index in self.by_gram.get(gram, ()):
                dots[index] += count * self.items[index][4][gram]
        found: List[Warning_] = []
        for index, dot in dots.items():
            other_intent, other_text, other_norm, other_words, _grams, other_len = self.items[index]
            if skip is not None and other_intent == intent and other_text == skip:
                continue
            if other_norm == norm:
                kind = "duplicate" if other_intent == intent else "conflict"
                found.append(Warning_(kind, other_text, other_intent, 1.0))
                continue
            if other_intent == intent:
                continue
            score = max(dot / (own_norm * other_len), jaccard(words, other_words))
            if score >= threshold:
                found.append(Warning_("similar", other_text, other_intent, score))
        found.sort(key=lambda w: (w.kind == "similar", -w.score))
        exact = [w for w in found if w.kind != "similar"]
        return exact + [w for w in found if w.kind == "similar"][:limit]


# ------------------------------------------------------------------ files
@dataclass
class IntentBlock:
    intent: str
    file: Path
    examples: List[str] = field(default_factory=list)


@dataclass
class ChangeResult:
    changed_files: List[str]
    diff: str
    warnings: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)


def example_lines(block: str) -> List[str]:
    return [m.group("text") for m in (_EXAMPLE_LINE.match(line) for line in str(block or "").split("\n")) if m and m.group("text")]


def strip_placeholders(text: str) -> str:
    """Removes the placeholders of masked personal data ([naam], [BSN], ...) and tidies
    the punctuation they leave behind: a training example never contains them."""
    out = _PLACEHOLDER.sub(" ", text or "")
    out = re.sub(r"\(\s*(?:bsn|tel\.?|telefoon|mail|e-mail)?\s*:?\s*\)", " ", out, flags=re.IGNORECASE)
    out = re.sub(r"\s+([,.!?;:])", r"\1", out)
    out = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    return re.sub(r"^[,;:.\s]+", "", out)


def entity_vocabulary(examples: Iterable[str], min_share: float = 0.8, min_count: int = 2) -> Dict[str, str]:
    """Words and phrases the training data marks as an entity nearly every time it
    contains them ("paspoort" -> document_type): lower-cased text -> entity name. A text
    marked as two different entities, marked fewer than ``min_count`` times or left
    unmarked in more than ``1 - min_share`` of the examples that contain it is skipped,
    and so are bare numbers."""
    marked: Dict[str, Counter] = {}
    for example in examples:
        for match in _ANNOTATION.finditer(example):
            if match.group("entity"):
                marked.setdefault(match.group("text").lower(), Counter())[match.group("entity")] += 1
    # Spellings that normalise alike ("id-kaart", "id kaart") share their marks: each
    # one's share is counted over the examples that contain any of them.
    by_form: Dict[str, Counter] = {}
    for text, entities in marked.items():
        by_form.setdefault(normalise(text), Counter()).update(entities)
    plain = [" " + normalise(example) + " " for example in examples]
    vocabulary: Dict[str, str] = {}
    for text in marked:
        form = normalise(text)
        entities = by_form.get(form, Counter())
        total = sum(entities.values())
        if len(entities) != 1 or total < min_count or not form or form.isdigit():
            continue  # numbers ("8" as an age) depend on the sentence: never suggested
        needle = " " + form + " "
        occurrences = sum(1 for example in plain if needle in example)
        if occurrences and total / occurrences >= min_share:
            vocabulary[text] = next(iter(entities))
    return vocabulary


def annotate(text: str, vocabulary: Dict[str, str]) -> str:
    """Marks the known entity values of ``vocabulary`` in an unannotated example
    ("wat kost een paspoort" -> "wat kost een [paspoort](document_type)"); longest
    phrases first, whole words only, each stretch of text at most once."""
    if not text or not vocabulary or _ANNOTATION.search(text):
        return text
    taken: List[Tuple[int, int, str]] = []
    for value in sorted(vocabulary, key=len, reverse=True):
        for match in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags=re.IGNORECASE):
            start, end = match.span()
            if not any(start < b and a < end for a, b, _ in taken):
                taken.append((start, end, vocabulary[value]))
    for start, end, entity in sorted(taken, reverse=True):
        text = f"{text[:start]}[{text[start:end]}]({entity}){text[end:]}"
    return text


class NluRepo:
    """The example questions in ``<data>/nlu/*.yml`` of one project directory."""

    def __init__(self, nlu_dir: Path, domain_dir: Optional[Path] = None, threshold: float = DEFAULT_THRESHOLD,
                 project_dir: Optional[Path] = None):
        self.dir = Path(nlu_dir)
        self.domain_dir = Path(domain_dir) if domain_dir else None
        self.threshold = threshold
        self.project_dir = Path(project_dir) if project_dir else self.dir.parent.parent

    def files(self) -> List[Path]:
        return sorted(p for p in self.dir.glob("*.yml") if p.is_file())

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.project_dir.resolve()))
        except ValueError:
            return f"data/nlu/{Path(path).name}"

    def blocks(self) -> List[IntentBlock]:
        blocks = []
        for path in self.files():
            document, _ = yaml_edit.load(path.read_text(encoding="utf-8"))
            for item in (document or {}).get("nlu") or []:
                if isinstance(item, dict) and item.get("intent") and "examples" in item:
                    blocks.append(IntentBlock(str(item["intent"]), path, example_lines(item["examples"])))
        return blocks

    def intents(self) -> Dict[str, IntentBlock]:
        """Intent -> its examples (over all files) and the file new examples go to."""
        merged: Dict[str, IntentBlock] = {}
        for block in self.blocks():
            if block.intent in merged:
                merged[block.intent].examples.extend(block.examples)
            else:
                merged[block.intent] = IntentBlock(block.intent, block.file, list(block.examples))
        return dict(sorted(merged.items()))

    def entities(self) -> Optional[set]:
        if not self.domain_dir or not self.domain_dir.exists():
            return None
        from ruamel.yaml import YAML

        names = set()
        files = [self.domain_dir] if self.domain_dir.is_file() else sorted(self.domain_dir.rglob("*.yml"))
        for path in files:
            document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
            for entity in document.get("entities") or []:
                names.add(next(iter(entity)) if isinstance(entity, dict) else str(entity))
        return names

    def vocabulary(self) -> Dict[str, str]:
        """Entity values the training data (nearly) always marks (see entity_vocabulary)."""
        return entity_vocabulary([example for block in self.intents().values() for example in block.examples])

    def suggest_example(self, text: str, vocabulary: Optional[Dict[str, str]] = None) -> str:
        """An inbox message as a training example: placeholders of masked personal data
        removed and the entity values the training data always marks, marked."""
        return annotate(strip_placeholders(text), self.vocabulary() if vocabulary is None else vocabulary)

    def index(self, intents: Optional[Dict[str, IntentBlock]] = None) -> _Index:
        intents = intents if intents is not None else self.intents()
        return _Index([(name, text) for name, block in intents.items() for text in block.examples])

    # ---------------------------------------------------------------- checks
    def check_text(self, text: str) -> str:
        text = re.sub(r"\s+", " ", str(text or "")).strip()
        if text.startswith("- "):
            text = text[2:].strip()
        if not text:
            raise EditorRefused(["Vul een voorbeeldvraag in."], code="empty")
        if len(text) > MAX_EXAMPLE_CHARS:
            raise EditorRefused([f"Een voorbeeldvraag mag hoogstens {MAX_EXAMPLE_CHARS} tekens hebben."], code="too_long")
        if _PLACEHOLDER.search(text):
            raise EditorRefused(["Haal de afgeschermde persoonsgegevens (zoals [naam] of [BSN]) uit de tekst."],
                                code="placeholder")
        known = self.entities()
        rest = _ANNOTATION.sub("", text)
        if "[" in rest or "]" in rest:
            raise EditorRefused(["Rechte haken zijn alleen voor entiteiten, zoals [morgen](date_expr). "
                                 "Haal de haken weg of maak de markering af."], code="brackets")
        for match in _ANNOTATION.finditer(text):
            entity = (match.group("entity") or "").split(":")[0].strip()
            if match.group("entity") is not None and known is not None and entity not in known:
                raise EditorRefused([f"De entiteit '{entity}' bestaat niet (bekend: {', '.join(sorted(known))})."],
                                    code="entity")
        return text

    def warnings_for(self, intent: str, text: str, skip: Optional[str] = None,
                     index: Optional[_Index] = None) -> List[Warning_]:
        return (index or self.index()).similar(text, intent, self.threshold, skip=skip)

    def intent_warnings(self, intent: str) -> Dict[str, List[str]]:
        """Warnings for every example of one intent (for its page)."""
        intents = self.intents()
        if intent not in intents:
            return {}
        index = self.index(intents)
        result: Dict[str, List[str]] = {}
        seen: Counter = Counter()
        for text in intents[intent].examples:
            seen[normalise(text)] += 1
        for text in intents[intent].examples:
            warnings = [w for w in index.similar(text, intent, self.threshold, skip=text) if w.kind != "duplicate"]
            messages = [w.message() for w in warnings]
            if seen[normalise(text)] > 1:
                messages.insert(0, "Dubbel: deze vraag staat meer dan eens bij dit onderwerp.")
            if messages:
                result[text] = messages
        return result

    # ---------------------------------------------------------------- changes
    def _edit_files(self, edits: Dict[Path, "callable"]) -> Tuple[List[str], str]:
        """Applies ``edit(document)`` per file and writes the changed ones."""
        changed, diffs = [], []
        for path, edit in edits.items():
            old = path.read_text(encoding="utf-8")
            document, yaml = yaml_edit.load(old)
            edit(document)
            new = yaml_edit.dump(document, yaml)
            if new != old:
                yaml_edit.load(new)  # must still parse
                changed.append((path, new))
                diffs.append(yaml_edit.unified_diff(old, new, self.rel(path)))
        for path, new in changed:
            yaml_edit.atomic_write(path, new)
        return [self.rel(p) for p, _ in changed], "".join(diffs)

    @staticmethod
    def _items(document, intent: str):
        for item in (document or {}).get("nlu") or []:
            if isinstance(item, dict) and str(item.get("intent")) == intent and "examples" in item:
                yield item

    @staticmethod
    def _set_block(item, lines: List[str]) -> None:
        text = "\n".join(lines).rstrip("\n") + "\n"
        item["examples"] = LiteralScalarString(text)

    @classmethod
    def _append(cls, document, intent: str, texts: List[str]) -> None:
        """Adds ``texts`` as examples of ``intent`` right after its last example line."""
        item = next(cls._items(document, intent))
        lines = str(item["examples"]).rstrip("\n").split("\n")
        last = max((i for i, line in enumerate(lines) if _EXAMPLE_LINE.match(line)), default=len(lines) - 1)
        for offset, text in enumerate(texts, start=1):
            lines.insert(last + offset, f"- {text}")
        cls._set_block(item, lines)

    def _locate(self, intent: str, text: str) -> Optional[Path]:
        for block in self.blocks():
            if block.intent == intent and text in block.examples:
                return block.file
        return None

    def add(self, intent: str, texts: Sequence[str]) -> ChangeResult:
        """Adds examples to an intent (at the end of its block); exact duplicates are refused."""
        with _write_lock:
            intents = self.intents()
            if intent not in intents:
                raise EditorRefused([f"Het onderwerp (intent) '{intent}' bestaat niet."], code="not_found")
            index = self.index(intents)
            accepted, warnings, skipped = [], [], []
            for raw in texts:
                text = self.check_text(raw)
                found = index.similar(text, intent, self.threshold)
                exact = [w for w in found if w.kind in ("duplicate", "conflict")]
                if exact or normalise(text) in {normalise(t) for t in accepted}:
                    if exact and exact[0].kind == "conflict":
                        raise EditorRefused([exact[0].message() + ". Verplaats dat voorbeeld als het bij "
                                             f"{intent} hoort."], code="conflict")
                    skipped.append(text)
                    continue
                warnings.extend(w.message() for w in found)
                accepted.append(text)
            if not accepted:
                if skipped:
                    raise EditorRefused([f"“{skipped[0]}” staat al bij {intent}."], code="duplicate")
                raise EditorRefused(["Vul een voorbeeldvraag in."], code="empty")
            target = intents[intent].file

            def edit(document):
                self._append(document, intent, accepted)

            files, diff = self._edit_files({target: edit})
            return ChangeResult(files, diff, warnings, skipped)

    def _rewrite(self, intent: str, texts: Sequence[str], replace: Dict[str, Optional[str]]) -> Dict[Path, "callable"]:
        """Edits per file that replace (text -> new text) or drop (text -> None) example lines."""
        edits = {}
        for path in {self._locate(intent, t) for t in texts}:
            if path is None:
                continue

            def edit(document, _replace=replace):
                for item in self._items(document, intent):
                    lines, out = str(item["examples"]).rstrip("\n").split("\n"), []
                    for line in lines:
                        match = _EXAMPLE_LINE.match(line)
                        if match and match.group("text") in _replace:
                            new = _replace[match.group("text")]
                            if new is not None:
                                out.append(f"{match.group('prefix')}{new}")
                            continue
                        out.append(line)
                    if out != lines:
                        self._set_block(item, out)

            edits[path] = edit
        return edits

    def _require(self, intent: str, texts: Sequence[str]) -> Dict[str, IntentBlock]:
        intents = self.intents()
        if intent not in intents:
            raise EditorRefused([f"Het onderwerp (intent) '{intent}' bestaat niet."], code="not_found")
        missing = [t for t in texts if t not in intents[intent].examples]
        if missing or not texts:
            raise EditorRefused([f"Voorbeeld niet gevonden bij {intent}: “{(missing or [''])[0]}”. "
                                 "Open de pagina opnieuw."], code="conflict")
        return intents

    def edit(self, intent: str, old: str, new: str) -> ChangeResult:
        with _write_lock:
            intents = self._require(intent, [old])
            text = self.check_text(new)
            found = self.index(intents).similar(text, intent, self.threshold, skip=old)
            exact = [w for w in found if w.kind in ("duplicate", "conflict")]
            if exact:
                raise EditorRefused([exact[0].message()], code=exact[0].kind)
            files, diff = self._edit_files(self._rewrite(intent, [old], {old: text}))
            return ChangeResult(files, diff, [w.message() for w in found])

    def delete(self, intent: str, texts: Sequence[str]) -> ChangeResult:
        with _write_lock:
            intents = self._require(intent, texts)
            left = [t for t in intents[intent].examples if t not in set(texts)]
            if not left:
                raise EditorRefused([f"Een onderwerp moet minstens één voorbeeld houden ({intent})."], code="last")
            files, diff = self._edit_files(self._rewrite(intent, texts, {t: None for t in texts}))
            return ChangeResult(files, diff)

    def move(self, intent: str, texts: Sequence[str], target: str) -> ChangeResult:
        with _write_lock:
            intents = self._require(intent, texts)
            if target not in intents or target == intent:
                raise EditorRefused([f"Kies een ander bestaand onderwerp dan {intent}."], code="target")
            left = [t for t in intents[intent].examples if t not in set(texts)]
            if not left:
                raise EditorRefused([f"Een onderwerp moet minstens één voorbeeld houden ({intent})."], code="last")
            already = {normalise(t) for t in intents[target].examples}
            moving = [t for t in texts if normalise(t) not in already]
            edits = self._rewrite(intent, texts, {t: None for t in texts})
            target_file = intents[target].file
            removal = edits.get(target_file)

            def edit(document, _removal=removal):
                if _removal is not None:
                    _removal(document)
                if not moving:
                    return
                self._append(document, target, moving)

            edits[target_file] = edit
            files, diff = self._edit_files(edits)
            index = self.index()
            warnings = [w.message() for t in moving for w in index.similar(t, target, self.threshold, skip=t)
                        if w.kind != "duplicate"]
            return ChangeResult(files, diff, warnings)
