"""Round-trip YAML for the content editors: read a file, change values, write it back
with its comments, key order, quoting and indentation intact (ruamel.yaml).

* ``load(text)`` returns ``(document, yaml)`` where ``yaml`` is set up with the
  indentation of that file (detected by trying the styles used in this project), so
  ``dump(document, yaml)`` of an unchanged document gives the text back unchanged.
* ``null`` stays ``null`` (ruamel would write an empty value).
* ``atomic_write`` replaces a file in one step (temporary file + rename, same
  permissions) and makes sure its modification time changes, because the content
  loader (``appcare.content``) reloads a file when its mtime changes.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Tuple

from ruamel.yaml import YAML

# (mapping, sequence, offset): content files indent block sequences under their key
# ("    value:\n      - item"), Rasa's NLU files do not ("nlu:\n- intent: x").
INDENT_STYLES = ((2, 2, 0), (2, 4, 2), (4, 4, 2), (2, 2, 2))


def _represent_none(representer, _data):
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def make_yaml(style: Tuple[int, int, int] = INDENT_STYLES[0]) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long texts onto a second line
    mapping, sequence, offset = style
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.representer.add_representer(type(None), _represent_none)
    return yaml


def dump(document: Any, yaml: YAML) -> str:
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def load(text: str) -> Tuple[Any, YAML]:
    """The round-trip document and a YAML object that writes it in the file's own style."""
    best: Optional[Tuple[int, Any, YAML]] = None
    for style in INDENT_STYLES:
        yaml = make_yaml(style)
        document = yaml.load(text)
        try:
            out = dump(document, yaml)
        except Exception:  # noqa: BLE001 - try the next style
            continue
        if out == text:
            return document, yaml
        score = sum(1 for a, b in zip(out.splitlines(), text.splitlines()) if a != b) + abs(
            len(out.splitlines()) - len(text.splitlines())
        )
        if best is None or score < best[0]:
            best = (score, document, yaml)
    if best is None:
        yaml = make_yaml()
        return yaml.load(text), yaml
    # No style reproduces the file exactly: load once more so the document is fresh.
    yaml = best[2]
    return yaml.load(text), yaml


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unified_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{name} (oud)", f"{name} (nieuw)", n=2)
    )


def atomic_write(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` in one step; the mtime always moves forward."""
    path = Path(path)
    old_mtime = path.stat().st_mtime if path.exists() else 0.0
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    new_mtime = path.stat().st_mtime
    if new_mtime <= old_mtime:  # coarse clock or a file dated in the future
        bumped = max(time.time(), old_mtime + 0.01)
        os.utime(path, (bumped, bumped))


# ------------------------------------------------------------------ trailing comments
# ruamel keeps the blank lines and comments that follow a block on the *last* key or
# item inside it. Removing or replacing that key would lose them (and the blank line
# between two sections); these helpers move them to whatever is last after a change.
def take_trailing(node: Any) -> Any:
    """Removes and returns the comment token that follows the last entry of ``node``."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap) and len(node):
        key = list(node.keys())[-1]
        slot = node.ca.items.get(key)
        if slot and len(slot) > 2 and slot[2] is not None:
            token = slot[2]
            slot[2] = None
            if not any(slot):
                node.ca.items.pop(key, None)
            return token
        return take_trailing(node[key])
    if isinstance(node, CommentedSeq) and len(node):
        index = len(node) - 1
        slot = node.ca.items.get(index)
        if slot and slot[0] is not None:
            token = slot[0]
            slot[0] = None
            if not any(slot):
                node.ca.items.pop(index, None)
            return token
        return take_trailing(node[index])
    return None


def put_trailing(node: Any, token: Any) -> bool:
    """Attaches ``token`` after the last entry of ``node`` (False if there is none)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if token is None:
        return True
    if isinstance(node, CommentedMap) and len(node):
        key = list(node.keys())[-1]
        value = node[key]
        if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not is_flow(value):
            return put_trailing(value, token)
        slot = node.ca.items.setdefault(key, [None, None, None, None])
        slot[2] = token
        return True
    if isinstance(node, CommentedSeq) and len(node):
        index = len(node) - 1
        value = node[index]
        if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not is_flow(value):
            return put_trailing(value, token)
        slot = node.ca.items.setdefault(index, [None, None, None, None])
        slot[0] = token
        return True
    return False


def is_flow(node: Any) -> bool:
    """True for a mapping or list written in flow style (``[a, b]``, ``{a: 1}``)."""
    try:
        return bool(node.fa.flow_style())
    except AttributeError:
        return False
