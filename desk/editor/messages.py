"""Plain Dutch for the editors: validation problems and before/after of a fact.

The content checks (appcare/content.py) report problems for developers, e.g.
``content/lelystad.yml:44: desks.balie.hours.value: donderdag: '25:00-20:00' is not a
time range like 08:30-17:00``. :func:`explain` turns such a line into a message an
editor understands, plus the form field it belongs to; the technical line is kept for
the "Technische details" fold. :func:`fact_changes` lists what changed in a fact.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, List, Optional

from appcare.clock import WEEKDAY_NAMES

WEEKDAYS = WEEKDAY_NAMES

_TECHNICAL = re.compile(r"^(?P<where>\S+\.ya?ml(?::\d+)?): (?P<dotted>[\w.()\s]+?): (?P<msg>.*)$", re.S)

FIELD_LABELS = {
    "value": "Waarde", "source": "Bron", "checked": "Gecontroleerd op", "verified": "Geverifieerd",
    "year": "Jaar", "note": "Notitie",
}

# (English message pattern, Dutch message, field of the form or None for the value field)
_RULES = [
    (r"^(?P<day>\w+): '(?P<item>.*)' is not a time range like (?P<example>\S+)$",
     "{Day}: '{item}' is geen geldige tijd. Schrijf het zo: {example}.", "day"),
    (r"^(?P<day>\w+): '(?P<item>.*)' ends before it starts$",
     "{Day}: '{item}' eindigt voordat het begint. Zet de begintijd vooraan, zoals 08:30-17:00.", "day"),
    (r"^source must be a web address", "De bron moet een webadres zijn dat begint met https:// (of http://).",
     "source"),
    (r"^checked date lies in the future",
     "De datum bij 'Gecontroleerd op' ligt in de toekomst. Vul de dag in waarop je het feit hebt gecontroleerd.",
     "checked"),
    (r"^a fee (needs `year:`|without a year)",
     "Vul het jaar in waarvoor het bedrag geldt, of haal het vinkje bij 'Geverifieerd' weg.", "year"),
    (r"^a fee cannot be negative", "Een bedrag kan niet negatief zijn.", "value"),
    (r"^value is not a valid (float|decimal)", "Vul een bedrag in, zoals 84,50.", "value"),
    (r"^value is not a valid integer", "Vul een heel getal in, zoals 2026.", None),
    (r"^(invalid date format|value is not a valid date)", "Vul een datum in, zoals 30-11-2026.", None),
    (r"^value could not be parsed to a boolean", "Kies ja of nee.", None),
    (r"^required field is missing", "Dit moet ingevuld worden.", None),
    (r"^unknown weekday", "Er staat een onbekende dag bij de openingstijden.", "value"),
    (r"^missing weekday", "Bij de openingstijden ontbreekt een dag. Laat een dag leeg als het dan dicht is.",
     "value"),
]


def explain(problem: str) -> Dict[str, Optional[str]]:
    """``{"message": Dutch text, "field": form field name or None, "technical": the line or None}``.

    Problems that are already written for editors (no file:line) come back unchanged."""
    match = _TECHNICAL.match(problem.strip())
    if not match:
        return {"message": problem, "field": None, "technical": None}
    dotted, msg = match.group("dotted").strip(), match.group("msg").strip()
    last = dotted.split(".")[-1]
    field = last if last in FIELD_LABELS else None
    for pattern, dutch, rule_field in _RULES:
        found = re.match(pattern, msg)
        if not found:
            continue
        parts = found.groupdict()
        if rule_field == "day":
            day = parts.get("day") or ""
            parts["Day"] = day.capitalize()
            field = f"day_{day}" if day in WEEKDAYS else "value"
        elif rule_field:
            field = rule_field
        return {"message": dutch.format(**parts), "field": field, "technical": problem}
    label = FIELD_LABELS.get(last)
    message = (f"{label}: dit klopt nog niet. Kijk bij Technische details wat er mis is, of vraag het een collega."
               if label else "De controle vond een probleem. Kijk bij Technische details, of vraag het een collega.")
    return {"message": message, "field": field, "technical": problem}


def name_intents(text: str, labels: Optional[Dict[str, str]]) -> str:
    """``text`` with intent ids (``passport_fees``) replaced by their Dutch names."""
    if not labels:
        return text
    return re.sub(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", lambda m: labels.get(m.group(0), m.group(0)), text)


def explain_all(problems: Optional[List[str]], labels: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The problems for a page: ``messages`` (Dutch, in order, without repeats), ``fields``
    (form field -> its Dutch messages) and ``technical`` (the original lines). With
    ``labels`` (intent id -> Dutch name) intent ids in the messages become names."""
    messages: List[str] = []
    fields: Dict[str, List[str]] = {}
    technical: List[str] = []
    for problem in problems or []:
        info = explain(problem)
        named = name_intents(info["message"] or "", labels)
        if named != info["message"]:
            info = dict(info, message=named, technical=info["technical"] or problem)
        if info["message"] not in messages:
            messages.append(info["message"])
        if info["field"]:
            fields.setdefault(info["field"], []).append(info["message"])
        if info["technical"]:
            technical.append(info["technical"])
    return {"messages": messages, "fields": fields, "technical": technical}


def show_value(value: Any) -> str:
    """A fact value as an editor writes it (comma decimals, ja/nee, hours per day)."""
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, bool):
        return "ja" if value else "nee"
    if isinstance(value, float):
        return f"{value:.2f}".replace(".", ",")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.strftime("%d-%m-%Y")
    if isinstance(value, dict):
        if set(value) <= set(WEEKDAYS):
            return "; ".join(f"{day} {', '.join(value.get(day) or []) or 'dicht'}" for day in WEEKDAYS if day in value)
        return "; ".join(f"{k}: {show_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(show_value(v) for v in value)
    text = str(value)
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        return dt.date.fromisoformat(text).strftime("%d-%m-%Y")
    return text


def fact_changes(old: Optional[Dict[str, Any]], new: Optional[Dict[str, Any]]) -> List[Dict[str, str]]:
    """What changed in a fact: ``[{"label", "old", "new"}]`` in the order of the form."""
    old, new = old or {}, new or {}
    keys = [k for k in FIELD_LABELS if k in old or k in new]
    keys += [k for k in list(old) + list(new) if k not in keys and k not in FIELD_LABELS]
    changes = []
    for key in dict.fromkeys(keys):
        before, after = old.get(key), new.get(key)
        if key == "verified":
            before = True if before is None and old else before
            after = True if after is None and new else after
        if show_value(before) != show_value(after):
            changes.append({"label": FIELD_LABELS.get(key, key), "old": show_value(before), "new": show_value(after)})
    return changes
