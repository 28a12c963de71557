"""Tables of the content editors' part of the desk (same database as the desk):

* ``desk_editor_inbox``  – not-understood citizen messages (masked) and what an
  editor did with them (assigned to an intent, new-topic wish, dismissed);
* ``desk_editor_jobs``   – publish and rollback jobs with stage, progress, figures;
* ``desk_editor_models`` – trained models: evaluation figures, when and by whom
  they were published and which model was live before (for the rollback);
* ``desk_editor_lock``   – the single-training lock (one row while a job runs).
"""
from __future__ import annotations

import datetime as dt
import json
import socket
import os
from typing import Any, Dict, List, Optional

from sqlalchemy import Column, DateTime, Float, Integer, String, Text, UniqueConstraint, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import declarative_base, sessionmaker

from appcare import db
from desk.store import utcnow

Base = declarative_base()
INBOX_STATES = ("new", "assigned", "wish", "dismissed")
# Audit actions of changes to example questions. An example may have been a citizen's
# message (the not-understood inbox), so the audit log keeps that it changed (intent,
# files, how many, a keyed id per example, who, when) and never the text.
EXAMPLE_AUDIT_ACTIONS = ("example_add", "example_edit", "example_move", "example_delete")
EXAMPLE_TEXT_KEYS = ("examples", "new", "old", "text", "example")
LOCK_STALE_AFTER = dt.timedelta(minutes=5)  # no heartbeat this long: the holder died


class InboxRow(Base):
    __tablename__ = "desk_editor_inbox"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_desk_editor_inbox_event"),)

    id = Column(Integer, primary_key=True)
    source = Column(String(16), nullable=False, default="")  # which tracker store (hash of its URL)
    event_id = Column(Integer, nullable=False)  # id in the tracker store's events table
    sender_hash = Column(String(32), nullable=False, index=True)
    ts = Column(Float, nullable=False, index=True)
    week = Column(String(10), nullable=False, index=True)
    text = Column(Text, nullable=False)  # masked
    intent = Column(String(128), nullable=True)
    confidence = Column(Float, nullable=True)
    reason = Column(String(32), nullable=False)
    status = Column(String(16), nullable=False, default="new", index=True)
    assigned_intent = Column(String(128), nullable=True)
    example = Column(Text, nullable=True)  # the training example it became
    handled_by = Column(String(128), nullable=True)
    handled_at = Column(DateTime, nullable=True)


class JobRow(Base):
    __tablename__ = "desk_editor_jobs"

    id = Column(Integer, primary_key=True)
    kind = Column(String(16), nullable=False)  # publish | rollback
    status = Column(String(16), nullable=False, default="running")  # running|published|refused|failed|rolled_back
    stage = Column(String(32), nullable=False, default="start")
    progress = Column(Integer, nullable=False, default=0)
    message = Column(Text, nullable=True)
    started_by = Column(String(128), nullable=False)
    started_at = Column(DateTime, nullable=False, default=utcnow)
    finished_at = Column(DateTime, nullable=True)
    old_model = Column(Text, nullable=True)
    new_model = Column(Text, nullable=True)
    old_figures = Column(Text, nullable=True)
    new_figures = Column(Text, nullable=True)
    reasons = Column(Text, nullable=True)  # JSON list of Dutch sentences
    log_tail = Column(Text, nullable=True)


class ModelRow(Base):
    __tablename__ = "desk_editor_models"

    id = Column(Integer, primary_key=True)
    path = Column(Text, nullable=False)
    eval_key = Column(String(64), nullable=True)  # figures are valid for this model file + test files
    figures = Column(Text, nullable=True)
    published_at = Column(DateTime, nullable=True)
    published_by = Column(String(128), nullable=True)
    previous_path = Column(Text, nullable=True)
    status = Column(String(16), nullable=False, default="candidate")  # candidate|live|retired|refused


class LockRow(Base):
    __tablename__ = "desk_editor_lock"

    name = Column(String(32), primary_key=True)
    job_id = Column(Integer, nullable=True)
    holder = Column(String(128), nullable=False)
    owner = Column(String(128), nullable=False)  # host:pid of the desk process
    acquired_at = Column(DateTime, nullable=False, default=utcnow)
    heartbeat_at = Column(DateTime, nullable=False, default=utcnow)


def example_id(text: str) -> str:
    """Keyed id of an example question (the same text gives the same id; the text
    cannot be read back from it)."""
    from appcare.pii import pseudonym

    return "ex-" + pseudonym(" ".join(str(text).split()), 12)


def example_audit_detail(detail: Dict[str, Any]) -> Dict[str, Any]:
    """The audit detail of a change to example questions without their texts: the
    texts (``examples``, ``new``, ...) become ``count`` and ``example_ids``. Used when
    auditing and by jobs/retention.py to repair rows written before."""
    out = {k: v for k, v in detail.items() if k not in EXAMPLE_TEXT_KEYS}
    texts: List[str] = []
    for key in EXAMPLE_TEXT_KEYS:
        value = detail.get(key)
        for text in (value if isinstance(value, list) else [value]):
            if isinstance(text, str) and text.strip() and example_id(text) not in (example_id(t) for t in texts):
                texts.append(text)
    out["count"] = len(texts)
    out["example_ids"] = [example_id(t) for t in texts]
    return out


def _loads(text: Optional[str]) -> Any:
    return json.loads(text) if text else None


def _job(row: JobRow) -> Dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind, "status": row.status, "stage": row.stage, "progress": row.progress,
        "message": row.message, "started_by": row.started_by, "started_at": row.started_at,
        "finished_at": row.finished_at, "old_model": row.old_model, "new_model": row.new_model,
        "old_figures": _loads(row.old_figures), "new_figures": _loads(row.new_figures),
        "reasons": _loads(row.reasons) or [], "log_tail": row.log_tail or "",
    }


def _inbox(row: InboxRow) -> Dict[str, Any]:
    return {
        "id": row.id, "event_id": row.event_id, "ts": row.ts, "week": row.week, "text": row.text,
        "intent": row.intent, "confidence": row.confidence, "reason": row.reason, "status": row.status,
        "assigned_intent": row.assigned_intent, "example": row.example, "handled_by": row.handled_by,
        "handled_at": row.handled_at, "sender_hash": row.sender_hash,
        "at": dt.datetime.fromtimestamp(row.ts, dt.timezone.utc),
    }


def _model(row: ModelRow) -> Dict[str, Any]:
    return {
        "id": row.id, "path": row.path, "eval_key": row.eval_key, "figures": _loads(row.figures),
        "published_at": row.published_at, "published_by": row.published_by,
        "previous_path": row.previous_path, "status": row.status,
    }


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LockBusy(Exception):
    def __init__(self, lock: Dict[str, Any]):
        super().__init__(f"training lock held by {lock.get('holder')}")
        self.lock = lock


class EditorStore:
    def __init__(self, url: Optional[str] = None):
        self.engine = db.get_engine(url)
        db.ensure_schema(self.engine)
        self._session = sessionmaker(bind=self.engine, expire_on_commit=False, future=True)

    # ------------------------------------------------------------------ lock
    def acquire_lock(self, holder: str, name: str = "training", owner: Optional[str] = None,
                     now: Optional[dt.datetime] = None, stale_after: dt.timedelta = LOCK_STALE_AFTER) -> Dict[str, Any]:
        """Takes the named lock or raises LockBusy. A lock whose heartbeat is older than
        ``stale_after`` (its desk process died) is taken over."""
        owner = owner or process_owner()
        for _attempt in range(3):
            now = now or utcnow()
            try:
                with self._session.begin() as session:
                    session.add(LockRow(name=name, holder=holder, owner=owner, acquired_at=now, heartbeat_at=now))
                return {"name": name, "holder": holder, "owner": owner, "acquired_at": now}
            except IntegrityError:
                current = self.lock(name)
                if current is None:
                    continue  # released meanwhile: try again
                if current["heartbeat_at"] + stale_after > now:
                    raise LockBusy(current)
                with self._session.begin() as session:  # compare-and-delete the stale lock
                    session.execute(
                        delete(LockRow).where(LockRow.name == name, LockRow.heartbeat_at == current["heartbeat_at"])
                    )
        raise LockBusy(self.lock(name) or {"holder": "?"})

    def lock(self, name: str = "training") -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(LockRow, name)
            if row is None:
                return None
            return {"name": row.name, "job_id": row.job_id, "holder": row.holder, "owner": row.owner,
                    "acquired_at": row.acquired_at, "heartbeat_at": row.heartbeat_at}

    def heartbeat(self, name: str = "training", job_id: Optional[int] = None, owner: Optional[str] = None) -> bool:
        values: Dict[str, Any] = {"heartbeat_at": utcnow()}
        if job_id is not None:
            values["job_id"] = job_id
        with self._session.begin() as session:
            query = update(LockRow).where(LockRow.name == name)
            if owner:
                query = query.where(LockRow.owner == owner)
            return (session.execute(query.values(**values)).rowcount or 0) == 1

    def release_lock(self, name: str = "training", owner: Optional[str] = None) -> bool:
        with self._session.begin() as session:
            query = delete(LockRow).where(LockRow.name == name)
            if owner:
                query = query.where(LockRow.owner == owner)
            return (session.execute(query).rowcount or 0) == 1

    # ------------------------------------------------------------------ jobs
    def create_job(self, kind: str, user: str, old_model: Optional[str] = None) -> Dict[str, Any]:
        with self._session.begin() as session:
            row = JobRow(kind=kind, started_by=user, status="running", stage="start", progress=0,
                         message="Gestart", old_model=old_model)
            session.add(row)
            session.flush()
            return _job(row)

    def update_job(self, job_id: int, **values: Any) -> None:
        for key in ("old_figures", "new_figures", "reasons"):
            if key in values and not isinstance(values[key], (str, type(None))):
                values[key] = json.dumps(values[key], ensure_ascii=False, default=str)
        if "log_tail" in values and values["log_tail"]:
            values["log_tail"] = values["log_tail"][-6000:]
        with self._session.begin() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    def job(self, job_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            return _job(row) if row else None

    def jobs(self, limit: int = 10) -> List[Dict[str, Any]]:
        with self._session() as session:
            rows = session.execute(select(JobRow).order_by(JobRow.id.desc()).limit(limit)).scalars()
            return [_job(r) for r in rows]

    def fail_running_jobs(self, message: str) -> int:
        """Jobs still 'running' from a desk process that no longer exists."""
        with self._session.begin() as session:
            result = session.execute(
                update(JobRow).where(JobRow.status == "running").values(
                    status="failed", message=message, finished_at=utcnow())
            )
            return result.rowcount or 0

    # ------------------------------------------------------------------ models
    def model(self, path: str) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.execute(
                select(ModelRow).where(ModelRow.path == path).order_by(ModelRow.id.desc()).limit(1)
            ).scalar_one_or_none()
            return _model(row) if row else None

    def save_model(self, model_path: str, **values: Any) -> Dict[str, Any]:
        if "figures" in values and not isinstance(values["figures"], (str, type(None))):
            values["figures"] = json.dumps(values["figures"], ensure_ascii=False, default=str)
        with self._session.begin() as session:
            row = _model_row(session, model_path)
            for key, value in values.items():
                setattr(row, key, value)
            session.flush()
            return _model(row)

    def live_model(self) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.execute(
                select(ModelRow).where(ModelRow.status == "live").order_by(ModelRow.published_at.desc(), ModelRow.id.desc()).limit(1)
            ).scalar_one_or_none()
            return _model(row) if row else None

    def set_live(self, path: str, user: str, previous: Optional[str]) -> None:
        with self._session.begin() as session:
            session.execute(update(ModelRow).where(ModelRow.status == "live").values(status="retired"))
            row = _model_row(session, path)
            row.status = "live"
            row.published_at = utcnow()
            row.published_by = user
            row.previous_path = previous

    # ------------------------------------------------------------------ inbox
    def add_inbox(self, items: List[Dict[str, Any]]) -> int:
        added = 0
        for item in items:
            try:
                with self._session.begin() as session:
                    if session.execute(select(InboxRow.id).where(InboxRow.source == item.get("source", ""),
                                                                 InboxRow.event_id == item["event_id"])).first():
                        continue
                    session.add(InboxRow(**item))
                    added += 1
            except IntegrityError:
                continue
        return added

    def upgrade_last_clarify(self, sender_hash: str) -> None:
        with self._session.begin() as session:
            row = session.execute(
                select(InboxRow).where(InboxRow.sender_hash == sender_hash).order_by(InboxRow.event_id.desc()).limit(1)
            ).scalar_one_or_none()
            if row is not None and row.reason == "clarify":
                row.reason = "handoff"

    def inbox(self, status: Optional[str] = "new", limit: int = 200) -> List[Dict[str, Any]]:
        query = select(InboxRow).order_by(InboxRow.ts.desc()).limit(limit)
        if status:
            query = query.where(InboxRow.status == status)
        with self._session() as session:
            return [_inbox(r) for r in session.execute(query).scalars()]

    def inbox_item(self, item_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(InboxRow, item_id)
            return _inbox(row) if row else None

    def handle_inbox(self, item_id: int, status: str, user: str, intent: Optional[str] = None,
                     example: Optional[str] = None) -> bool:
        if status not in INBOX_STATES:
            raise ValueError(status)
        with self._session.begin() as session:
            result = session.execute(
                update(InboxRow).where(InboxRow.id == item_id, InboxRow.status == "new").values(
                    status=status, assigned_intent=intent, example=example, handled_by=user, handled_at=utcnow())
            )
            return (result.rowcount or 0) == 1

    def inbox_counts(self, weeks: int = 8) -> List[Dict[str, Any]]:
        """Per ISO week (newest first): total and per status."""
        with self._session() as session:
            rows = session.execute(
                select(InboxRow.week, InboxRow.status, func.count(InboxRow.id)).group_by(InboxRow.week, InboxRow.status)
            ).all()
        table: Dict[str, Dict[str, Any]] = {}
        for week, status, count in rows:
            entry = table.setdefault(week, {"week": week, "total": 0, **{s: 0 for s in INBOX_STATES}})
            entry[status] = entry.get(status, 0) + count
            entry["total"] += count
        return sorted(table.values(), key=lambda e: e["week"], reverse=True)[:weeks]

    def wishes(self, limit: int = 50) -> List[Dict[str, Any]]:
        return self.inbox(status="wish", limit=limit)


def _model_row(session: Any, path: str) -> ModelRow:
    """The newest row of the model file ``path``, added when there is none."""
    row = session.execute(
        select(ModelRow).where(ModelRow.path == path).order_by(ModelRow.id.desc()).limit(1)
    ).scalar_one_or_none()
    if row is None:
        row = ModelRow(path=path)
        session.add(row)
    return row
