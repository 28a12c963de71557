"""What the content editors do in the desk: facts, example questions, the
not-understood inbox, publishing a retrained model and rolling it back.

Files stay the source of truth: facts land in ``content/*.yml``, examples in
``data/nlu/*.yml`` of the project directory (``APPCARE_PROJECT_DIR``, default the
repository). Every change is written to the desk's audit log.

Publishing (``start_publish``) takes the single-training lock, then in a background
thread runs ``desk.editor.job`` (``rasa data validate``, ``rasa train``,
evaluation on the held-out file and the test stories) as a subprocess, compares the
new model with the live one, and only when intent macro-F1 does not drop (beyond
``APPCARE_EDITOR_F1_TOLERANCE``) and every test story passes moves it into
``models/`` and loads it into the running Rasa server (``PUT /model``). The model
that was live stays in ``models/`` for the one-click rollback.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import requests

from appcare.ops import processes
from appcare.plugins import live_model
from desk.editor import inbox
from desk.editor.content import NATIONAL, ContentRepo, EditorRefused
from desk.editor.job import PROGRESS_MARKER
from desk.editor.nlu import NluRepo, annotate, strip_placeholders
from desk.editor.store import EditorStore, LockBusy, example_audit_detail, process_owner
from desk.service import DeskError
from desk.settings import Settings
from desk.store import DeskStore, utcnow

logger = logging.getLogger(__name__)

CODE_ROOT = Path(__file__).resolve().parents[2]
_EPOCHS = re.compile(r"Epochs:\s+(\d+)%")
_BAR = re.compile(r"^(.*?)\s*\d+%\|")  # tqdm: "Epochs:  40%|####      | 60/150 [...]"


def _bar_label(line: str) -> Optional[str]:
    """The label of a progress-bar line ("Epochs:", "" for unlabelled bars), else None."""
    match = _BAR.match(line)
    return match.group(1) if match else None
_CURSOR_KEY = "editor_inbox_cursor"


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}".replace(".", ",")


def compare(old: Optional[Dict[str, Any]], new: Dict[str, Any], tolerance: float) -> List[str]:
    """Why a new model may not be published (Dutch sentences; [] = it may)."""
    reasons: List[str] = []
    if new.get("error"):
        return [f"Het nieuwe model kon niet getest worden: {new['error']}"]
    failed = new.get("stories_failed") or 0
    if failed:
        names = ", ".join(f"“{n}”" for n in (new.get("failed_stories") or [])[:5])
        reasons.append(
            f"{failed} van de {new.get('stories_total', '?')} testverhalen mislukt"
            + (f": {names}" if names else "") + ". Het nieuwe model reageert daar anders dan afgesproken."
        )
    if old is None or old.get("macro_f1") is None:
        reasons.append("De cijfers van het model dat nu live is zijn onbekend, dus vergelijken kan niet.")
    elif new.get("macro_f1") is None or new["macro_f1"] < old["macro_f1"] - tolerance - 1e-9:
        drops = []
        for intent, before in (old.get("per_intent") or {}).items():
            after = (new.get("per_intent") or {}).get(intent, 0.0)
            if after < before - 0.05:
                drops.append((before - after, intent, before, after))
        drops.sort(reverse=True)
        detail = "; ".join(f"{i} {_fmt(b, 2)} → {_fmt(a, 2)}" for _d, i, b, a in drops[:4])
        reasons.append(
            f"De intent macro-F1 op de testvragen daalt van {_fmt(old['macro_f1'])} naar {_fmt(new.get('macro_f1'))}"
            f" (toegestaan: hoogstens {_fmt(tolerance)} lager)." + (f" Grootste dalingen: {detail}." if detail else "")
        )
    return reasons


class EditorService:
    def __init__(self, settings: Settings, store: DeskStore, editor_store: Optional[EditorStore] = None):
        self.settings = settings
        self.store = store
        self.editor = editor_store or EditorStore(settings.db_url)
        self.project_dir = Path(settings.project_dir or CODE_ROOT).resolve()
        self.content_dir = Path(settings.content_dir).resolve() if settings.content_dir else self.project_dir / "content"
        endpoints = settings.endpoints or "endpoints.yml"
        self.endpoints = Path(endpoints) if Path(endpoints).is_absolute() else self.project_dir / endpoints
        self.models_dir = self.project_dir / "models"
        self.content = ContentRepo(self.content_dir, self.project_dir)
        self.nlu = NluRepo(self.project_dir / "data" / "nlu", self.project_dir / "domain", settings.similarity,
                           self.project_dir)
        self.owner = process_owner()
        self._threads: List[threading.Thread] = []
        self._procs: List[subprocess.Popen] = []
        self._inbox_lock = threading.Lock()
        self._clarified: Dict[str, bool] = {}  # sender hash -> last turn was a clarifying question
        # A job marked running in the database while no desk process holds the lock
        # (the desk was stopped during a training) can never finish.
        lock = self.editor.lock()
        if lock is None:
            self.editor.fail_running_jobs("De desk is gestopt tijdens deze taak.")

    # ------------------------------------------------------------------ audit
    def audit(self, user: Dict[str, Any], action: str, detail: Dict[str, Any]) -> None:
        self.store.audit(user["username"], action, None, detail)

    CHANGE_LABELS = {
        "fact_changed": "feit gewijzigd", "closure_added": "sluitingsdag toegevoegd",
        "closure_changed": "sluitingsdag gewijzigd", "closure_deleted": "sluitingsdag verwijderd",
        "example_add": "voorbeeldvraag toegevoegd", "example_edit": "voorbeeldvraag gewijzigd",
        "example_move": "voorbeeldvragen verplaatst", "example_delete": "voorbeeldvragen verwijderd",
        "inbox_assigned": "niet-begrepen vraag toegewezen", "published": "nieuw model gepubliceerd",
        "publish_refused": "publiceren geweigerd", "rolled_back": "teruggedraaid",
    }

    def recent_changes(self, limit: int = 15) -> List[Dict[str, Any]]:
        """Who changed what, newest first (from the desk's audit log)."""
        rows = self.store.audit_log(limit=400)
        changes = []
        for row in rows:
            label = self.CHANGE_LABELS.get(row["action"])
            if not label:
                continue
            detail = row.get("detail") or {}
            what = detail.get("fact") or detail.get("intent") or detail.get("model") or detail.get("file") or ""
            if row["action"] == "example_move" and detail.get("target"):
                what = f"{what} → {detail['target']}"
            changes.append({"at": row["at"], "who": row["actor"], "label": label, "what": what,
                            "file": detail.get("file") or ", ".join(detail.get("files") or [])})
            if len(changes) >= limit:
                break
        return changes

    # ------------------------------------------------------------------ facts
    def scopes(self) -> List[Dict[str, str]]:
        names = {m: m.capitalize() for m in self.content.municipalities()}
        return [{"id": m, "label": label} for m, label in names.items()] + [
            {"id": NATIONAL, "label": "Landelijk (alle gemeenten)"}
        ]

    def check_scope(self, scope: str) -> str:
        if scope not in self.content.scopes():
            raise DeskError(404, "not_found", "Deze gemeente bestaat niet.")
        return scope

    def save_fact(self, scope: str, path: str, kind: str, form: Dict[str, Any], user: Dict[str, Any],
                  preview: bool = False):
        try:
            result = self.content.save_fact(scope, path, kind, form, version=form.get("version") or None,
                                            preview=preview)
        except EditorRefused as exc:
            if not preview:
                self.audit(user, "fact_refused", {"file": self._file(scope), "fact": path, "problems": exc.problems})
            raise
        if result.written:
            self.audit(user, "fact_changed", {"file": result.file, "fact": path, "old": result.old, "new": result.new})
        return result

    def save_exception(self, scope: str, form: Dict[str, Any], user: Dict[str, Any], index: Optional[int] = None,
                       delete: bool = False, preview: bool = False):
        try:
            result = self.content.save_exception(scope, form, index=index, delete=delete,
                                                 version=form.get("version") or None, preview=preview)
        except EditorRefused as exc:
            if not preview:
                self.audit(user, "closure_refused", {"file": self._file(scope), "problems": exc.problems})
            raise
        if result.written:
            action = "closure_deleted" if delete else ("closure_changed" if index is not None else "closure_added")
            self.audit(user, action, {"file": result.file, "index": index, "old": result.old, "new": result.new})
        return result

    def _file(self, scope: str) -> str:
        try:
            return self.content.rel(self.content.file_of(scope))
        except EditorRefused:
            return scope

    # ------------------------------------------------------------------ examples
    def intents(self) -> List[Dict[str, Any]]:
        return [
            {"name": name, "count": len(block.examples), "file": self.nlu.rel(block.file)}
            for name, block in self.nlu.intents().items()
        ]

    def intent(self, name: str) -> Dict[str, Any]:
        intents = self.nlu.intents()
        if name not in intents:
            raise DeskError(404, "not_found", "Dit onderwerp (intent) bestaat niet.")
        block = intents[name]
        return {
            "name": name,
            "file": self.nlu.rel(block.file),
            "examples": block.examples,
            "warnings": self.nlu.intent_warnings(name),
            "others": [i for i in intents if i != name],
        }

    def change_examples(self, action: str, intent: str, user: Dict[str, Any], texts: List[str],
                        new_text: str = "", target: str = ""):
        if action == "add":
            result = self.nlu.add(intent, [new_text])
        elif action == "edit":
            result = self.nlu.edit(intent, texts[0] if texts else "", new_text)
        elif action == "delete":
            result = self.nlu.delete(intent, texts)
        elif action == "move":
            result = self.nlu.move(intent, texts, target)
        else:
            raise DeskError(400, "bad_action", "Onbekende actie.")
        # which examples changed, never their texts (an example may be a citizen's message)
        self.audit(user, f"example_{action}", example_audit_detail({
            "intent": intent, "target": target or None, "files": result.changed_files,
            "examples": texts[:20] if action != "add" else [new_text], "new": new_text if action == "edit" else None,
        }))
        return result

    # ------------------------------------------------------------------ inbox
    def sync_inbox(self) -> Dict[str, Any]:
        """Reads new tracker-store events into the inbox (masked). Cheap when nothing is new."""
        with self._inbox_lock:
            try:
                url = inbox.tracker_store_url(self.endpoints, self.project_dir)
            except (OSError, ValueError) as exc:
                return {"ok": False, "error": f"De tracker store is niet te lezen ({exc})."}
            source = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
            key = f"{_CURSOR_KEY}:{source}"
            cursor = int(self.store.get_value(key) or 0)
            added = 0
            try:
                for _round in range(20):
                    events = inbox.read_events(url, cursor)
                    if not events:
                        break
                    items, hold, self._clarified, upgrades = inbox.scan(
                        events, self.settings.low_confidence, clarified_before=self._clarified)
                    added += self.editor.add_inbox([
                        {"source": source, "event_id": i.event_id, "sender_hash": i.sender_hash, "ts": i.ts,
                         "week": i.week, "text": i.text, "intent": i.intent, "confidence": i.confidence,
                         "reason": i.reason}
                        for i in items
                    ])
                    for digest in upgrades:
                        self.editor.upgrade_last_clarify(digest)
                    new_cursor = (hold - 1) if hold is not None else events[-1].id
                    if new_cursor > cursor:
                        cursor = new_cursor
                        self.store.set_value(key, str(cursor))
                    if hold is not None or len(events) < 5000:
                        break
            except Exception as exc:  # noqa: BLE001 - shown on the page, the desk keeps working
                logger.warning("inbox sync failed: %s", type(exc).__name__)
                return {"ok": False, "error": f"De tracker store is niet te lezen ({type(exc).__name__})."}
            if len(self._clarified) > 50000:
                self._clarified = {k: v for k, v in self._clarified.items() if v}
            return {"ok": True, "added": added}

    def assign(self, item_id: int, intent: str, text: str, user: Dict[str, Any]) -> Dict[str, Any]:
        item = self.editor.inbox_item(item_id)
        if item is None:
            raise DeskError(404, "not_found", "Dit bericht staat niet (meer) in de inbox.")
        if item["status"] != "new":
            raise DeskError(409, "handled", "Dit bericht is al afgehandeld.")
        # the editor's (possibly corrected) text from the form, else the suggestion shown there
        example = strip_placeholders(text) if text.strip() else self.nlu.suggest_example(item["text"])
        result = self.nlu.add(intent, [example])
        if not self.editor.handle_inbox(item_id, "assigned", user["username"], intent=intent, example=example):
            raise DeskError(409, "handled", "Dit bericht is al afgehandeld.")
        # The example itself stays out of the audit log (it started as a citizen message).
        self.audit(user, "inbox_assigned", {"item": item_id, "intent": intent, "files": result.changed_files})
        return {"example": example, "warnings": result.warnings, "files": result.changed_files}

    def assign_many(self, item_ids: Sequence[int], intent: str, texts: Dict[int, str],
                    user: Dict[str, Any]) -> Dict[str, Any]:
        """Assigns several inbox items to one intent at once (one edit of the training data).

        ``texts`` holds the editor's corrected text per item (else the suggestion is used).
        Items already handled meanwhile are skipped; identical questions become one example."""
        ids = list(dict.fromkeys(int(i) for i in item_ids))
        if not ids:
            raise EditorRefused(["Vink eerst een of meer vragen aan."], code="empty")
        if not intent:
            raise EditorRefused(["Kies een onderwerp."], code="empty")
        items = [self.editor.inbox_item(i) for i in ids]
        open_items = [item for item in items if item is not None and item["status"] == "new"]
        if not open_items:
            raise DeskError(409, "handled", "Deze vragen zijn al afgehandeld.")
        examples: Dict[int, str] = {}
        for item in open_items:
            text = str(texts.get(item["id"]) or "")
            examples[item["id"]] = (strip_placeholders(text) if text.strip()
                                    else self.nlu.suggest_example(item["text"]))
        try:
            result = self.nlu.add(intent, list(examples.values()))
            files, warnings = result.changed_files, result.warnings
        except EditorRefused as exc:
            if exc.code != "duplicate":
                raise
            files, warnings = [], []  # all of them are examples already: only mark them handled
        done = [i for i, example in examples.items()
                if self.editor.handle_inbox(i, "assigned", user["username"], intent=intent, example=example)]
        # Only that examples were added, never their text (they started as citizen messages).
        self.audit(user, "inbox_assigned", {"items": done, "count": len(done), "intent": intent, "files": files})
        return {"assigned": len(done), "skipped": len(ids) - len(done), "warnings": warnings, "files": files}

    def with_suggestions(self, items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Inbox items with the training example each would become (entities marked)."""
        vocabulary = self.nlu.vocabulary()
        return [dict(item, suggestion=annotate(strip_placeholders(item["text"]), vocabulary)) for item in items]

    def mark(self, item_id: int, status: str, user: Dict[str, Any]) -> None:
        if status not in ("wish", "dismissed"):
            raise DeskError(400, "bad_status", "Onbekende keuze.")
        if not self.editor.handle_inbox(item_id, status, user["username"]):
            raise DeskError(409, "handled", "Dit bericht is al afgehandeld of bestaat niet.")
        self.audit(user, f"inbox_{status}", {"item": item_id})

    # ------------------------------------------------------------------ models
    def _rasa_headers(self) -> Dict[str, str]:
        """Rasa's HTTP API is authenticated with a JWT in a header (never ?token= in a URL)."""
        from desk.rasa_client import auth_headers

        return auth_headers(self.settings.rasa_jwt_secret)

    def rasa_status(self) -> Optional[Dict[str, Any]]:
        try:
            response = requests.get(f"{self.settings.model_urls[0]}/status", headers=self._rasa_headers(), timeout=3)
            if response.status_code == 200:
                return response.json()
        except (requests.RequestException, ValueError):
            pass
        return None

    def live_model(self, status: Optional[Dict[str, Any]] = None) -> Tuple[Optional[Path], Optional[str]]:
        """(path of the model Rasa runs now, or None; the file name Rasa reports)."""
        status = status if status is not None else self.rasa_status()
        name = (status or {}).get("model_file") if status else None
        if not name:
            live = self.editor.live_model()
            return (Path(live["path"]), None) if live and Path(live["path"]).exists() else (None, None)
        live = self.editor.live_model()
        if live and Path(live["path"]).name == name and Path(live["path"]).exists():
            return Path(live["path"]), name
        for candidate in [self.models_dir / name, *self.models_dir.rglob(name)]:
            if candidate.exists():
                return candidate.resolve(), name
        return None, name

    def eval_key(self, model: Path) -> str:
        digest = hashlib.sha256()
        stat = model.stat()
        digest.update(f"{model.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode())
        for path in (self.project_dir / "tests" / "nlu_holdout.yml", self.project_dir / "tests" / "test_stories.yml"):
            digest.update(path.read_bytes() if path.exists() else b"-")
        return digest.hexdigest()

    def known_figures(self, model: Path) -> Optional[Dict[str, Any]]:
        row = self.editor.model(str(model))
        if row and row.get("figures") and row.get("eval_key") == self.eval_key(model):
            return row["figures"]
        return None

    def overview(self) -> Dict[str, Any]:
        status = self.rasa_status()
        live_path, live_name = self.live_model(status or {})
        live_row = self.editor.model(str(live_path)) if live_path else None
        previous = live_row.get("previous_path") if live_row and live_row.get("status") == "live" else None
        jobs = self.editor.jobs(8)
        return {
            "rasa": status is not None,
            "live_name": live_name or (live_path.name if live_path else None),
            "live_figures": self.known_figures(live_path) if live_path else None,
            "previous": Path(previous).name if previous and Path(previous).exists() else None,
            "lock": self.editor.lock(),
            "job": jobs[0] if jobs else None,
            "jobs": jobs,
            "tolerance": self.settings.f1_tolerance,
        }

    # ------------------------------------------------------------------ publish
    def start_publish(self, user: Dict[str, Any]) -> Dict[str, Any]:
        return self._start("publish", user, self._publish)

    def start_rollback(self, user: Dict[str, Any]) -> Dict[str, Any]:
        return self._start("rollback", user, self._rollback)

    def _start(self, kind: str, user: Dict[str, Any], target: Callable) -> Dict[str, Any]:
        try:
            self.editor.acquire_lock(user["username"], owner=self.owner)
        except LockBusy as exc:
            holder = exc.lock.get("holder", "iemand")
            since = exc.lock.get("acquired_at")
            when = f" (sinds {since:%H:%M} UTC)" if since else ""
            raise DeskError(409, "busy", f"Er loopt al een training of publicatie, gestart door {holder}{when}. "
                                         "Wacht tot die klaar is.")
        try:
            # Holding the lock, no other job can be running: one marked so was cut off.
            self.editor.fail_running_jobs("Afgebroken: de desk stopte tijdens deze taak.")
            job = self.editor.create_job(kind, user["username"])
            self.editor.heartbeat(job_id=job["id"], owner=self.owner)
        except Exception:
            self.editor.release_lock(owner=self.owner)
            raise
        self.audit(user, f"{kind}_started", {"job": job["id"]})
        thread = threading.Thread(target=self._run_job, args=(job["id"], user, target), name=f"editor-{kind}-{job['id']}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def _run_job(self, job_id: int, user: Dict[str, Any], target: Callable) -> None:
        stop = threading.Event()

        def beat():
            while not stop.wait(5.0):
                self.editor.heartbeat(owner=self.owner)

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            target(job_id, user)
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            logger.exception("editor job %s failed", job_id)
            self.editor.update_job(job_id, status="failed", message=f"Mislukt: {type(exc).__name__}: {exc}",
                                   finished_at=utcnow())
        finally:
            stop.set()
            self.editor.release_lock(owner=self.owner)

    def shutdown(self) -> None:
        """Stops a running training job (the desk is stopping); its job ends as failed."""
        for proc in list(self._procs):
            if proc.poll() is None:
                processes.send(proc, signal.SIGTERM)  # its process group; no waiting here

    def wait(self, timeout: float = 0) -> None:
        """Waits for running jobs (tests and shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout or None)

    def _train_config(self) -> Path:
        if self.settings.train_config:
            path = Path(self.settings.train_config)
            return path if path.is_absolute() else (self.project_dir / path)
        out = self.models_dir / "config.effective.yml"
        subprocess.run(
            [sys.executable, "-m", "appcare.plugins.nlp_pipeline", "config", "--base", str(self.project_dir / "config.yml"),
             "--out", str(out)],
            cwd=str(self.project_dir), env=self._env(), check=True, capture_output=True, timeout=120,
        )
        if self.project_dir != CODE_ROOT.resolve():
            self._absolute_spacy_path(out)
        return out

    def _absolute_spacy_path(self, config: Path) -> None:
        """A relative spaCy pipeline path only works from the repository (Rasa's cwd)."""
        from desk.editor import yaml_edit

        text = config.read_text(encoding="utf-8")
        document, yaml = yaml_edit.load(text)
        for component in document.get("pipeline") or []:
            model = component.get("model") if isinstance(component, dict) else None
            if component.get("name") == "SpacyNLP" and model and ("/" in str(model)) and not Path(model).is_absolute():
                resolved = (self.project_dir / model).resolve()
                component["model"] = str(resolved if resolved.exists() else (CODE_ROOT / "models" / "spacy" / Path(model).name))
        yaml_edit.atomic_write(config, yaml_edit.dump(document, yaml))

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("RASA_TELEMETRY_ENABLED", "false")
        env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _publish(self, job_id: int, user: Dict[str, Any]) -> None:
        update = functools.partial(self.editor.update_job, job_id)
        if self.rasa_status() is None:
            update(status="failed", stage="start", message="De assistent (Rasa) is niet bereikbaar, dus publiceren kan nu "
                   "niet. Er is niets getraind of gewijzigd.", finished_at=utcnow())
            return
        live_path, live_name = self.live_model()
        if live_path is None:
            update(status="failed", stage="start", progress=100, finished_at=utcnow(),
                   message=f"Het model dat de assistent nu gebruikt ({live_name or 'onbekend'}) staat niet in "
                           f"{self.models_dir}; zonder dat model kan het nieuwe niet vergeleken worden. Er is niets "
                           "getraind of gewijzigd.")
            return
        old_figures = self.known_figures(live_path)
        update(old_model=str(live_path) if live_path else live_name, stage="config", progress=1,
               message="Configuratie klaarzetten")
        config = self._train_config()
        name = time.strftime("%Y%m%d-%H%M%S") + f"-redactie-{job_id}"
        candidates = self.models_dir / "candidates"
        candidates.mkdir(parents=True, exist_ok=True)
        result_file = candidates / f"{name}.result.json"
        cmd = [
            sys.executable, "-m", "desk.editor.job",
            "--data", str(self.project_dir / "data"), "--domain", str(self.project_dir / "domain"),
            "--config", str(config), "--out", str(candidates), "--name", name,
            "--nlu-holdout", str(self.project_dir / "tests" / "nlu_holdout.yml"),
            "--stories", str(self.project_dir / "tests" / "test_stories.yml"),
            "--result", str(result_file),
        ]
        if old_figures is None:
            cmd += ["--evaluate-old", str(live_path)]
        log_tail = self._run_subprocess(job_id, cmd)
        try:
            result = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {"ok": False, "error": "de trainingstaak stopte zonder resultaat"}
        finally:
            result_file.unlink(missing_ok=True)
        if not result.get("ok"):
            stage = {"validate": "De controle van de trainingsdata (rasa data validate) vond fouten.",
                     "train": "Het trainen is mislukt.", "evaluate": "Het testen van het nieuwe model is mislukt."}
            update(status="failed", stage=result.get("stage") or "train", progress=100, finished_at=utcnow(),
                   message=f"{stage.get(result.get('stage'), 'Mislukt.')} Er is niets gepubliceerd. "
                           f"({result.get('error', '')})", log_tail=log_tail)
            return
        new_path = Path(result["model"])
        if not new_path.is_absolute():
            new_path = (self.project_dir / new_path).resolve()
        new_figures = result["new"]
        if result.get("old"):
            old_figures = result["old"]
        if old_figures and not old_figures.get("error"):
            self.editor.save_model(str(live_path), figures=old_figures, eval_key=self.eval_key(live_path),
                                   status=(self.editor.model(str(live_path)) or {}).get("status") or "live")
        reasons = compare(old_figures, new_figures, self.settings.f1_tolerance)
        update(new_model=str(new_path), old_figures=old_figures, new_figures=new_figures, reasons=reasons,
               log_tail=log_tail)
        if reasons:
            self.editor.save_model(str(new_path), figures=new_figures, eval_key=self.eval_key(new_path), status="refused")
            update(status="refused", stage="compare", progress=100, finished_at=utcnow(),
                   message="Niet gepubliceerd: het nieuwe model is slechter dan het huidige. De assistent gebruikt "
                           "nog het oude model.")
            self.audit(user, "publish_refused", {"job": job_id, "reasons": reasons})
            return
        update(stage="load", progress=96, message="Nieuw model laden in de assistent")
        final = self.models_dir / new_path.name
        shutil.move(str(new_path), str(final))
        self.editor.save_model(str(final), figures=new_figures, eval_key=self.eval_key(final), status="candidate")
        problem = self._load_into_rasa(final, fallback=live_path)
        if problem:
            shutil.move(str(final), str(new_path))
            update(status="failed", stage="load", progress=100, finished_at=utcnow(),
                   message=f"Het nieuwe model is goed, maar de assistent kon het niet laden: {problem}. "
                           "De assistent gebruikt nog het oude model.")
            return
        self.editor.set_live(str(final), user["username"], previous=str(live_path))
        live_model.write(self.models_dir, final)  # a restart (make run) keeps this model
        note = self._git_commit(user, f"Redactie: nieuw model {final.name} gepubliceerd")
        update(status="published", stage="done", progress=100, finished_at=utcnow(),
               message="Gepubliceerd: de assistent gebruikt nu het nieuwe model." + (f" {note}" if note else ""))
        self.audit(user, "published", {"job": job_id, "model": final.name, "previous": live_path.name,
                                        "macro_f1": new_figures.get("macro_f1")})

    def _run_subprocess(self, job_id: int, cmd: List[str]) -> str:
        proc = processes.start(cmd, name="publish job", cwd=self.project_dir, env=self._env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # its own process group
        self._procs.append(proc)
        tail: List[str] = []
        last_percent, last_write = -1, 0.0
        deadline = time.monotonic() + self.settings.job_timeout
        buffer = b""
        stage_message = ""

        def handle(segment: str) -> None:
            nonlocal last_percent, last_write, stage_message
            segment = re.sub(r"\x1b\[[0-9;]*m", "", segment).strip()
            if not segment:
                return
            if PROGRESS_MARKER in segment:
                try:
                    info = json.loads(segment.split(PROGRESS_MARKER, 1)[1])
                except ValueError:
                    return
                stage_message = info.get("message", "")
                last_percent = int(info.get("percent", 0))
                self.editor.update_job(job_id, stage=info.get("stage", ""), progress=last_percent, message=stage_message)
                last_write = time.monotonic()
                return
            match = _EPOCHS.search(segment)
            if match:
                percent = 10 + int(int(match.group(1)) * 0.68)
                if percent > last_percent and time.monotonic() - last_write > 1.0:
                    last_percent, last_write = percent, time.monotonic()
                    self.editor.update_job(job_id, progress=percent,
                                           message=f"Model trainen (DIET, {match.group(1)}% van de rondes)")
            bar = _bar_label(segment)
            if bar is not None and tail and _bar_label(tail[-1]) == bar:
                tail[-1] = segment[:300]  # a progress bar: keep only its latest state
                return
            tail.append(segment[:300])
            del tail[:-80]

        def too_long() -> None:
            tail.append("[afgebroken: de taak duurde te lang]")
            processes.send(proc, signal.SIGKILL)

        watchdog = threading.Timer(max(1.0, deadline - time.monotonic()), too_long)
        watchdog.daemon = True
        watchdog.start()
        while True:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            if not chunk:
                break
            buffer += chunk
            parts = re.split(rb"[\r\n]", buffer)
            buffer = parts.pop()
            for part in parts:
                handle(part.decode("utf-8", "replace"))
        if buffer:
            handle(buffer.decode("utf-8", "replace"))
        proc.wait()
        watchdog.cancel()
        self._procs.remove(proc)
        return "\n".join(tail)

    def _load_one(self, url: str, model: Path) -> Optional[str]:
        """PUT /model on one Rasa server; None when it reports the new model afterwards."""
        try:
            response = requests.put(f"{url}/model", headers=self._rasa_headers(),
                                    json={"model_file": str(model)}, timeout=self.settings.model_load_timeout)
        except requests.RequestException as exc:
            return f"assistent niet bereikbaar ({type(exc).__name__})"
        if response.status_code not in (200, 204):
            return f"assistent antwoordde {response.status_code}"
        try:
            status = requests.get(f"{url}/status", headers=self._rasa_headers(), timeout=10).json()
        except (requests.RequestException, ValueError):
            status = {}
        if status.get("model_file") != model.name:
            return f"de assistent meldt een ander model ({status.get('model_file')})"
        return None

    def _load_into_rasa(self, model: Path, fallback: Optional[Path] = None) -> Optional[str]:
        """Loads ``model`` into every Rasa instance, one after the other, so the others
        keep answering meanwhile. When one fails, the instances that already took the
        new model get ``fallback`` (the model that was live) back, so all instances
        answer with the same model. None on success, else what went wrong."""
        urls = self.settings.model_urls
        for index, url in enumerate(urls):
            problem = self._load_one(url, model)
            if problem is None:
                continue
            where = f" (instantie {index + 1} van {len(urls)})" if len(urls) > 1 else ""
            logger.warning("loading model %s into instance %d/%d failed: %s", model.name, index + 1, len(urls), problem)
            if fallback is not None:
                for done in urls[:index]:
                    if self._load_one(done, fallback):
                        logger.error("could not put model %s back on an instance; instances differ", fallback.name)
            return problem + where
        return None

    def _rollback(self, job_id: int, user: Dict[str, Any]) -> None:
        update = functools.partial(self.editor.update_job, job_id)
        live_path, _name = self.live_model()
        row = self.editor.model(str(live_path)) if live_path else None
        previous = Path(row["previous_path"]) if row and row.get("previous_path") else None
        if previous is None or not previous.exists():
            update(status="failed", stage="start", progress=100, finished_at=utcnow(),
                   message="Er is geen vorig model om naar terug te gaan.")
            return
        update(old_model=str(live_path), new_model=str(previous), stage="load", progress=30,
               message=f"Vorig model {previous.name} laden in de assistent")
        problem = self._load_into_rasa(previous, fallback=live_path)
        if problem:
            update(status="failed", stage="load", progress=100, finished_at=utcnow(),
                   message=f"Terugdraaien is niet gelukt: {problem}. De assistent gebruikt nog {live_path.name}.")
            return
        retired = self.models_dir / "retired"
        retired.mkdir(parents=True, exist_ok=True)
        moved = retired / live_path.name
        if live_path.parent.resolve() == self.models_dir.resolve():
            shutil.move(str(live_path), str(moved))  # `make run` starts the newest model in models/
            self.editor.save_model(str(live_path), path=str(moved), status="retired")
        now = time.time()
        os.utime(previous, (now, now))
        previous_row = self.editor.model(str(previous)) or {}
        self.editor.set_live(str(previous), user["username"], previous=previous_row.get("previous_path"))
        if previous.parent.resolve() == self.models_dir.resolve():
            live_model.write(self.models_dir, previous)
        if previous_row.get("figures"):
            self.editor.save_model(str(previous), eval_key=self.eval_key(previous))
        update(status="rolled_back", stage="done", progress=100, finished_at=utcnow(),
               message=f"Teruggedraaid: de assistent gebruikt weer {previous.name}. De voorbeeldvragen in de "
                       "bestanden zijn niet teruggezet; pas ze aan voordat je opnieuw publiceert.")
        self.audit(user, "rolled_back", {"job": job_id, "model": previous.name, "from": live_path.name})

    # ------------------------------------------------------------------ git
    def _git_commit(self, user: Dict[str, Any], message: str) -> str:
        """Commits content/ and data/nlu/ of APPCARE_PROJECT_DIR with the editor as author
        (only with APPCARE_EDITOR_GIT_COMMIT=1 and an explicit project directory)."""
        if not (self.settings.git_commit and self.settings.project_dir):
            return ""
        if not (self.project_dir / ".git").exists() or shutil.which("git") is None:
            return "Geen git-commit: de projectmap is geen git-repository."
        name = user["username"]
        env = dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=f"{name}@appcare.invalid",
                   GIT_COMMITTER_NAME="appcare-desk", GIT_COMMITTER_EMAIL="desk@appcare.invalid")
        env.pop("GIT_DIR", None)
        env.pop("GIT_INDEX_FILE", None)
        paths = [p for p in ("content", "data/nlu") if (self.project_dir / p).exists()]
        try:
            subprocess.run(["git", "-C", str(self.project_dir), "add", "--", *paths], env=env, check=True,
                           capture_output=True, timeout=60)
            staged = subprocess.run(["git", "-C", str(self.project_dir), "diff", "--cached", "--quiet", "--", *paths],
                                    env=env, capture_output=True, timeout=60)
            if staged.returncode == 0:
                return ""  # nothing changed in content/ or data/nlu/
            done = subprocess.run(
                ["git", "-C", str(self.project_dir), "commit", "-m", message, "--author", f"{name} <{name}@appcare.invalid>",
                 "--", *paths],
                env=env, capture_output=True, text=True, timeout=60,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return f"Git-commit mislukt ({type(exc).__name__})."
        if done.returncode != 0:
            if "nothing to commit" in (done.stdout + done.stderr):
                return ""
            return "Git-commit mislukt."
        return "Wijzigingen vastgelegd in git."
