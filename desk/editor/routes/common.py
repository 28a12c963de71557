"""What the editor's blueprints share: the permission, the template globals and the
answer to an :class:`~desk.editor.content.EditorRefused`."""
from __future__ import annotations

from typing import Any, Dict

from sanic.request import Request

from appcare.clock import WEEKDAY_NAMES
from desk.editor.content import KIND_LABELS, NATIONAL, EditorRefused
from desk.editor.inbox import REASON_LABELS
from desk.editor.messages import explain_all, fact_changes, name_intents
from desk.editor.nlu import strip_placeholders
from desk.web import jsonr, render

PERMISSION = "edit"
WEEKDAYS = WEEKDAY_NAMES
JOB_STATUS = {
    "running": "bezig",
    "published": "gepubliceerd",
    "refused": "geweigerd",
    "failed": "mislukt",
    "rolled_back": "teruggedraaid",
}


def template_globals(labels: Dict[str, str]) -> Dict[str, Any]:
    """What the editor's templates use besides the page context (``labels``: the
    Dutch intent names, desk/intent_labels.yml)."""
    return {
        "kind_labels": KIND_LABELS, "weekdays": WEEKDAYS, "reason_labels": REASON_LABELS,
        "job_status": JOB_STATUS, "national": NATIONAL, "strip_placeholders": strip_placeholders,
        "fact_changes": fact_changes,
        "intent_label": lambda name: labels.get(name or "", name or "–"),
        "explain_all": lambda problems: explain_all(problems, labels),
        "name_intents": lambda text: name_intents(text, labels),
    }


async def editor_refused(request: Request, exc: EditorRefused):
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 422)
    if request.path.startswith("/api/"):
        return jsonr({"error": "Niet gelukt", "code": exc.code, "problems": exc.problems}, status=status)
    return render(request, "error.html", status=status, title="Niet gelukt", message=" ".join(exc.problems),
                  link=("/editor", "Terug naar de redactie"))


def refused(request: Request, exc: EditorRefused, status: int = 422):
    return jsonr({"error": "Niet opgeslagen", "code": exc.code, "problems": exc.problems},
                 status=409 if exc.code == "conflict" else status)
