"""Facts of the content files for the editors' forms: list them, turn a filled-in form
into a change of the YAML file, validate the changed file with exactly the rules of
``appcare.content`` (on a temporary copy, before anything is written) and write it
back with comments and order intact.

Scopes: a municipality (``content/<gemeente>.yml``) or ``national``
(``content/national.yml``, shared by all municipalities). A fact is edited in the
file that defines it: a municipality page lists its own facts and the national facts
it inherits (those are marked, a change there applies to every municipality).
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString, SingleQuotedScalarString

from appcare import clock
from appcare import content as content_module
from appcare.content import (
    WEEKDAYS,
    BoolFact,
    ContentError,
    Fact,
    FeeFact,
    HoursFact,
    IntFact,
    LocationsFact,
    MunicipalContent,
    TextFact,
    TextListFact,
)
from desk.editor import yaml_edit

NATIONAL = "national"
KINDS: Dict[Type[Fact], str] = {
    FeeFact: "fee",
    HoursFact: "hours",
    IntFact: "int",
    BoolFact: "bool",
    TextListFact: "textlist",
    LocationsFact: "locations",
    TextFact: "text",
}
SECTIONS = [
    ("contact", "Contact"),
    ("desks", "Balies en openingstijden"),
    ("kcc", "KCC (WhatsApp-medewerkers)"),
    ("closures", "Sluitingsdagen"),
    ("passport", "Paspoort en ID-kaart"),
    ("marriage", "Trouwen en partnerschap"),
    ("roadworks", "Wegwerkzaamheden"),
]
LABELS = {
    "contact.phone": "Telefoonnummer",
    "contact.email": "E-mailadres",
    "contact.website": "Website",
    "contact.appointment_url": "Link afspraak maken",
    "contact.privacy_url": "Link privacyverklaring",
    "crisis.emergency": "Alarmnummer bij gevaar",
    "crisis.suicide_line": "Hulplijn zelfmoordpreventie",
    "crisis.domestic_violence_line": "Veilig Thuis (huiselijk geweld, kindermishandeling)",
    "crisis.municipal_line": "Spoednummer gemeente buiten kantoortijd",
    "kcc.hours": "Openingstijden KCC",
    "closures.closed_on_public_holidays": "Dicht op officiële feestdagen",
    "passport.fees.paspoort_18_plus": "Leges paspoort 18 jaar en ouder",
    "passport.fees.paspoort_under_18": "Leges paspoort jonger dan 18",
    "passport.fees.id_kaart_18_plus": "Leges ID-kaart 18 jaar en ouder",
    "passport.fees.id_kaart_under_18": "Leges ID-kaart jonger dan 18",
    "passport.fees.express_surcharge": "Toeslag spoedaanvraag",
    "passport.fees_table_url": "Link tarieventabel",
    "passport.validity_years_adult": "Geldigheid volwassene (jaren)",
    "passport.validity_years_minor": "Geldigheid minderjarige (jaren)",
    "passport.processing_working_days": "Levertijd (werkdagen)",
    "passport.express_cutoff": "Spoedaanvraag uiterlijk om",
    "passport.collect_within_months": "Ophalen binnen (maanden)",
    "passport.id_duty_age": "Identificatieplicht vanaf (leeftijd)",
    "passport.bring": "Meenemen bij de aanvraag",
    "passport.child_consent": "Toestemming voor kinderen",
    "passport.lost_steps": "Stappen bij verlies of diefstal",
    "marriage.notice_min_days": "Melding minimaal (dagen vooraf)",
    "marriage.notice_max_months": "Melding maximaal (maanden vooraf)",
    "marriage.notice_how": "Zo doe je de melding",
    "marriage.notice_online": "Melding online",
    "marriage.witnesses": "Getuigen",
    "marriage.conditions": "Voorwaarden",
    "marriage.difference": "Verschil huwelijk en partnerschap",
    "marriage.locations": "Trouwlocaties",
    "marriage.own_location": "Eigen trouwlocatie",
    "marriage.cost_weekday": "Kosten trouwen doordeweeks",
    "marriage.cost_saturday": "Kosten trouwen zaterdag",
    "marriage.free_option": "Gratis trouwen",
    "marriage.info_url": "Link informatie trouwen",
    "roadworks.page_url": "Link pagina wegwerkzaamheden",
}
KIND_LABELS = {
    "fee": "bedrag",
    "hours": "openingstijden",
    "int": "getal",
    "bool": "ja/nee",
    "textlist": "lijst",
    "locations": "locaties",
    "text": "tekst",
}
_write_lock = threading.Lock()


class EditorRefused(Exception):
    """A change that was not written; ``problems`` say why (file:line where known)."""

    def __init__(self, problems: List[str], code: str = "invalid"):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.code = code


STALE_AFTER_DAYS = content_module.STALE_AFTER_DAYS


@dataclass
class FactView:
    path: str
    scope: str  # municipality id or "national": the file that defines the fact
    kind: str
    label: str
    section: str
    line: int
    form: Dict[str, Any] = field(default_factory=dict)
    verified: bool = True
    missing: bool = False  # optional fact not filled in yet
    inherited: bool = False  # a national fact shown on a municipality page

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.path}"

    @property
    def stale(self) -> bool:
        """Checked at its source more than STALE_AFTER_DAYS ago: worth checking again."""
        try:
            checked = dt.date.fromisoformat(str(self.form.get("checked") or ""))
        except ValueError:
            return False
        return (clock.now().date() - checked).days > STALE_AFTER_DAYS


@dataclass
class SaveResult:
    file: str
    diff: str
    written: bool
    old: Any = None
    new: Any = None
    version: str = ""


def label_for(path: str) -> str:
    if path in LABELS:
        return LABELS[path]
    parts = path.split(".")
    if parts[0] == "desks" and len(parts) == 3:
        return {"hours": "Openingstijden", "address": "Adres"}.get(parts[2], parts[2]) + f" – {parts[1]}"
    return parts[-1].replace("_", " ").capitalize()


def section_of(path: str) -> str:
    head = path.split(".")[0]
    return dict(SECTIONS).get(head, head)


def _section_rank(path: str) -> int:
    head = path.split(".")[0]
    keys = [k for k, _ in SECTIONS]
    return keys.index(head) if head in keys else len(keys)


# ------------------------------------------------------------------ form values
def money_text(value: Any) -> str:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(value)
    return f"{amount}".replace(".", ",")


def form_of(kind: str, node: Any) -> Dict[str, Any]:
    """Form field values of a fact (a mapping of the YAML document, or None)."""
    node = node if isinstance(node, dict) else {}
    value = node.get("value")
    form: Dict[str, Any] = {
        "source": str(node.get("source") or ""),
        "checked": str(node.get("checked") or ""),
        "verified": bool(node.get("verified", True)) if node else False,
        "note": str(node.get("note") or ""),
    }
    if kind == "fee":
        form["value"] = money_text(value) if value is not None else ""
        year = node.get("year")
        form["year"] = "" if year is None else str(year)
    elif kind == "hours":
        value = value if isinstance(value, dict) else {}
        form["days"] = {day: ", ".join(str(r) for r in (value.get(day) or [])) for day in WEEKDAYS}
    elif kind == "bool":
        form["value"] = "ja" if value else "nee"
    elif kind == "textlist":
        form["value"] = "\n".join(str(v) for v in (value or []))
    elif kind == "locations":
        lines = []
        for item in value or []:
            item = item if isinstance(item, dict) else {"name": str(item)}
            seats = item.get("seats")
            lines.append(f"{item.get('name', '')} | {seats}" if seats is not None else str(item.get("name", "")))
        form["value"] = "\n".join(lines)
    else:
        form["value"] = "" if value is None else str(value)
    return form


def _clean(value: Any, limit: int = 2000) -> str:
    text = str(value if value is not None else "").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()[:limit]


def _number(text: str) -> Any:
    """'84,50' -> 84.5; anything unreadable stays text (the loader names the problem)."""
    cleaned = text.replace("€", "").replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(\.\d{3})+,\d{1,2}", cleaned):  # 1.069,00
        cleaned = cleaned.replace(".", "").replace(",", ".")
    cleaned = cleaned.replace(",", ".")
    try:
        return float(Decimal(cleaned))
    except (InvalidOperation, ValueError):
        return text


def _integer(text: str) -> Any:
    return int(text) if re.fullmatch(r"-?\d+", text.strip()) else text


def _date(text: str) -> Any:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return text  # the loader says "invalid date format"


def _quoted_like(old: Any, new: str) -> Any:
    """Keeps the quoting style of the old scalar for a changed string."""
    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(new)
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(new)
    if isinstance(old, LiteralScalarString) and "\n" in new:
        return LiteralScalarString(new)
    if re.fullmatch(r"\d{1,2}:\d{2}", new):  # "15:00" is a time, never sexagesimal
        return DoubleQuotedScalarString(new)
    return new


def flow_list(items: List[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _ranges(text: str) -> List[Any]:
    parts = [p.strip() for p in re.split(r"[,;\n]+", text or "") if p.strip()]
    return [DoubleQuotedScalarString(p.replace(" ", "").replace("–", "-")) for p in parts]


def value_from_form(kind: str, form: Dict[str, Any], old_value: Any = None) -> Any:
    if kind == "fee":
        amount = _number(_clean(form.get("value")))
        if isinstance(amount, float):
            text = f"{amount:.2f}"
            return ScalarFloat(amount, width=len(text), prec=text.index("."))
        return amount
    if kind == "int":
        return _integer(_clean(form.get("value")))
    if kind == "bool":
        return _clean(form.get("value")).lower() in ("ja", "true", "1", "on", "yes")
    if kind == "hours":
        days = CommentedMap()
        old_value = old_value if isinstance(old_value, dict) else {}
        for day in WEEKDAYS:
            text = form.get(f"day_{day}")
            if text is None and isinstance(form.get("days"), dict):
                text = form["days"].get(day)
            days[day] = flow_list(_ranges(str(text or "")))
        return days
    if kind == "textlist":
        return [line.strip() for line in _clean(form.get("value"), 8000).split("\n") if line.strip()]
    if kind == "locations":
        items = []
        for line in _clean(form.get("value"), 8000).split("\n"):
            if not line.strip():
                continue
            name, _, seats = line.partition("|")
            entry = CommentedMap()
            entry["name"] = name.strip()
            if seats.strip():
                entry["seats"] = _integer(seats.strip())
            items.append(entry)
        return items
    text = _clean(form.get("value"), 4000)
    return _quoted_like(old_value, text)


def apply_form(node: CommentedMap, kind: str, form: Dict[str, Any]) -> None:
    """Changes a fact mapping in place; keys keep their order, new keys go to the end."""
    trailing = yaml_edit.take_trailing(node)
    node["value"] = value_from_form(kind, form, node.get("value"))
    if kind == "fee":
        year = _clean(form.get("year"))
        node["year"] = None if year == "" else _integer(year)
    source = _clean(form.get("source"), 500)
    node["source"] = _quoted_like(node.get("source"), source) if source else ""
    checked = _clean(form.get("checked"), 20)
    node["checked"] = _date(checked) if checked else ""
    verified = str(form.get("verified") or "").lower() in ("1", "on", "true", "ja", "yes")
    if verified:
        node.pop("verified", None)  # "leave it out when verified" (national.yml header)
    else:
        node["verified"] = False
    note = _clean(form.get("note"), 1000)
    if note:
        node["note"] = _quoted_like(node.get("note"), note)
    else:
        node.pop("note", None)
    if not source:
        node.pop("source", None)  # the loader then says "required field is missing"
    if not checked:
        node.pop("checked", None)
    yaml_edit.put_trailing(node, trailing)


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        return str(value)
    return value


# ------------------------------------------------------------------ document access
def _walk(document: Any, path: str, create: bool = False) -> Optional[Any]:
    node = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        if part not in node or node[part] is None:
            if not create:
                return None
            node[part] = CommentedMap()
        node = node[part]
    return node


def _line(document: Any, path: str) -> int:
    """Line of a dotted fact path in a ruamel document (for sorting; unknown: last)."""
    return content_module.line_of(document, tuple(path.split("."))) or 10**6


def _fact_types(model: Any, path: str = "") -> Iterator[Tuple[str, Type[Fact], bool]]:
    """(path, fact class, present) for every fact field, also optional empty ones."""
    if not isinstance(model, BaseModel):
        return
    for name, model_field in model.__fields__.items():
        value = getattr(model, name)
        sub = f"{path}.{name}" if path else name
        type_ = model_field.type_
        if isinstance(type_, type) and issubclass(type_, Fact):
            if isinstance(value, dict):
                continue
            yield sub, type(value) if isinstance(value, Fact) else type_, value is not None
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from _fact_types(item, f"{sub}.{key}")
        elif isinstance(value, BaseModel):
            yield from _fact_types(value, sub)


class ContentRepo:
    """The content files of one directory (``content/`` or a copy of it)."""

    def __init__(self, content_dir: Path, project_dir: Optional[Path] = None):
        self.dir = Path(content_dir)
        self.project_dir = Path(project_dir) if project_dir else self.dir.parent

    # ---------------------------------------------------------------- files
    def municipalities(self) -> List[str]:
        return content_module.available_municipalities(self.dir)

    def scopes(self) -> List[str]:
        return self.municipalities() + [NATIONAL]

    def file_of(self, scope: str) -> Path:
        if scope != NATIONAL and scope not in self.municipalities():
            raise EditorRefused([f"onbekende gemeente '{scope}'"], code="not_found")
        return self.dir / (content_module.NATIONAL_FILE if scope == NATIONAL else f"{scope}.yml")

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.project_dir.resolve()))
        except ValueError:
            return f"content/{Path(path).name}"

    def read(self, scope: str) -> str:
        return self.file_of(scope).read_text(encoding="utf-8")

    def version(self, scope: str) -> str:
        return yaml_edit.sha(self.read(scope))

    # ---------------------------------------------------------------- validation
    def validate(self, changed: Dict[str, str], municipalities: Optional[List[str]] = None) -> List[str]:
        """Problems of the content with the changed file texts ({file name: text}), checked
        by ``appcare.content.validate_dir`` on a temporary copy (nothing is written here)."""
        tmp = Path(tempfile.mkdtemp(prefix="appcare-editor-content-"))
        try:
            for path in self.dir.glob("*.yml"):
                shutil.copy2(path, tmp / path.name)
            for name, text in changed.items():
                (tmp / name).write_text(text, encoding="utf-8")
            problems = content_module.validate_dir(tmp, municipalities or self.municipalities())
            prefixes = sorted({str(tmp.resolve()), str(tmp)}, key=len, reverse=True)
            cleaned = []
            for problem in problems:
                for prefix in prefixes:
                    problem = problem.replace(prefix + "/", "content/")
                if problem not in cleaned:
                    cleaned.append(problem)
            return cleaned
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def loaded(self, municipality: str) -> MunicipalContent:
        try:
            return content_module.load_from(self.dir, municipality)
        except ContentError as exc:
            raise EditorRefused(exc.problems, code="broken") from exc

    # ---------------------------------------------------------------- listing
    def facts(self, scope: str) -> List[FactView]:
        """Every fact of a scope, unverified ones first, then by section and file order."""
        municipality = scope if scope != NATIONAL else (self.municipalities() or [None])[0]
        if municipality is None:
            return []
        model = self.loaded(municipality)
        own_doc, _ = yaml_edit.load(self.read(scope))
        national_doc = None
        if scope != NATIONAL and (self.dir / content_module.NATIONAL_FILE).exists():
            national_doc, _ = yaml_edit.load(self.read(NATIONAL))
        views: List[FactView] = []
        for path, cls, present in _fact_types(model):
            kind = KINDS.get(cls, "text")
            own = _walk(own_doc, path)
            if scope == NATIONAL:
                if own is None:
                    continue
                views.append(self._view(path, NATIONAL, kind, own, _line(own_doc, path)))
            elif own is not None:
                views.append(self._view(path, scope, kind, own, _line(own_doc, path)))
            elif national_doc is not None and _walk(national_doc, path) is not None:
                view = self._view(path, NATIONAL, kind, _walk(national_doc, path), 10**5 + _line(national_doc, path))
                view.inherited = True
                views.append(view)
            elif not present:
                view = self._view(path, scope, kind, None, 10**6)
                view.missing = True
                views.append(view)
        views.sort(key=lambda v: (2 if v.missing else (1 if v.verified else 0), _section_rank(v.path), v.line))
        return views

    def _view(self, path: str, scope: str, kind: str, node: Any, line: int) -> FactView:
        form = form_of(kind, node)
        return FactView(
            path=path, scope=scope, kind=kind, label=label_for(path), section=section_of(path), line=line,
            form=form, verified=bool(node) and bool(node.get("verified", True)),
        )

    def fact(self, scope: str, path: str, page_scope: Optional[str] = None) -> FactView:
        for view in self.facts(page_scope or scope):
            if view.path == path and view.scope == scope:
                return view
        raise EditorRefused([f"feit '{path}' bestaat niet in {scope}"], code="not_found")

    # ---------------------------------------------------------------- changes
    def _targets(self, scope: str) -> List[str]:
        return self.municipalities() if scope == NATIONAL else [scope]

    def _commit(self, scope: str, old_text: str, new_text: str, version: Optional[str], preview: bool) -> SaveResult:
        path = self.file_of(scope)
        name = self.rel(path)
        if version and version != yaml_edit.sha(old_text):
            raise EditorRefused(
                [f"{name} is intussen door iemand anders gewijzigd. Open de pagina opnieuw en voer je wijziging nog eens in."],
                code="conflict",
            )
        diff = yaml_edit.unified_diff(old_text, new_text, name)
        if not diff:
            return SaveResult(file=name, diff="", written=False, version=yaml_edit.sha(old_text))
        problems = self.validate({path.name: new_text}, self._targets(scope))
        if problems:
            raise EditorRefused(problems)
        if not preview:
            yaml_edit.atomic_write(path, new_text)
        return SaveResult(file=name, diff=diff, written=not preview, version=yaml_edit.sha(new_text))

    def save_fact(self, scope: str, path: str, kind: str, form: Dict[str, Any], version: Optional[str] = None,
                  preview: bool = False) -> SaveResult:
        """Validates and (unless ``preview``) writes one fact; raises EditorRefused."""
        if kind not in KIND_LABELS:
            raise EditorRefused([f"onbekend soort feit '{kind}'"])
        with _write_lock:
            old_text = self.read(scope)
            document, yaml = yaml_edit.load(old_text)
            node = _walk(document, path)
            parent, trailing = None, None
            if node is None:  # an optional fact that was not filled in yet
                parent_path, _, _ = path.rpartition(".")
                parent = _walk(document, parent_path, create=True) if parent_path else document
                trailing = yaml_edit.take_trailing(parent)
                node = _walk(document, path, create=True)
            if not isinstance(node, CommentedMap):
                raise EditorRefused([f"{path} is geen feit met value/source/checked"])
            before = plain(dict(node))
            apply_form(node, kind, form)
            if parent is not None:
                yaml_edit.put_trailing(parent, trailing)
            after = plain(dict(node))
            new_text = yaml_edit.dump(document, yaml)
            result = self._commit(scope, old_text, new_text, version, preview)
            result.old, result.new = before, after
            return result

    # ---------------------------------------------------------------- closures
    def exceptions(self, scope: str) -> List[Dict[str, Any]]:
        if scope == NATIONAL:
            return []
        document, _ = yaml_edit.load(self.read(scope))
        items = _walk(document, "closures.exceptions") or []
        result = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            item = item if isinstance(item, dict) else {}
            result.append({
                "index": index,
                "date": str(item.get("date") or ""),
                "desk": str(item.get("desk") or ""),
                "hours": ", ".join(str(h) for h in (item.get("hours") or [])),
                "reason": str(item.get("reason") or ""),
                "source": str(item.get("source") or ""),
                "checked": str(item.get("checked") or ""),
                "verified": bool(item.get("verified", True)),
            })
        result.sort(key=lambda e: (e["verified"], e["date"]))
        return result

    def desks(self, scope: str) -> List[str]:
        if scope == NATIONAL:
            return []
        document, _ = yaml_edit.load(self.read(scope))
        return [str(k) for k in (document.get("desks") or {})]

    def save_exception(self, scope: str, form: Dict[str, Any], index: Optional[int] = None,
                       delete: bool = False, version: Optional[str] = None, preview: bool = False) -> SaveResult:
        if scope == NATIONAL:
            raise EditorRefused(["sluitingsdagen horen bij een gemeente, niet bij de landelijke gegevens"])
        with _write_lock:
            old_text = self.read(scope)
            document, yaml = yaml_edit.load(old_text)
            closures = _walk(document, "closures", create=True)
            items = closures.get("exceptions")
            trailing = None
            if isinstance(items, CommentedSeq) and len(items) and not yaml_edit.is_flow(items):
                trailing = yaml_edit.take_trailing(items)
            else:
                slot = closures.ca.items.get("exceptions")
                if slot and len(slot) > 2:
                    trailing, slot[2] = slot[2], None
                items = CommentedSeq(list(items or []))
            before = plain(list(items))
            if index is not None and not 0 <= index < len(items):
                raise EditorRefused(["deze sluitingsdag bestaat niet (meer); open de pagina opnieuw"], code="conflict")
            if delete:
                del items[index]
            else:
                entry = items[index] if index is not None else CommentedMap()
                entry["date"] = _date(_clean(form.get("date"), 20))
                desk = _clean(form.get("desk"), 64)
                if desk:
                    entry["desk"] = desk
                else:
                    entry.pop("desk", None)
                entry["hours"] = flow_list(_ranges(str(form.get("hours") or "")))
                entry["reason"] = _clean(form.get("reason"), 300)
                entry["source"] = _clean(form.get("source"), 500)
                entry["checked"] = _date(_clean(form.get("checked"), 20))
                verified = str(form.get("verified") or "").lower() in ("1", "on", "true", "ja", "yes")
                if verified:
                    entry.pop("verified", None)
                else:
                    entry["verified"] = False
                for key in ("source", "checked", "reason"):
                    if entry.get(key) == "":
                        entry.pop(key)
                if index is None:
                    items.append(entry)
            if not items:
                items = flow_list([])
            closures["exceptions"] = items
            if len(items):
                yaml_edit.put_trailing(items, trailing)
            elif trailing is not None:
                closures.ca.items.setdefault("exceptions", [None, None, None, None])[2] = trailing
            after = plain(list(items))
            new_text = yaml_edit.dump(document, yaml)
            result = self._commit(scope, old_text, new_text, version, preview)
            result.old, result.new = before, after
            return result
