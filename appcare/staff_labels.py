"""Dutch names that staff, editors and the report read for the codes the assistant
stores, in one place (the citizens' texts are in appcare/labels.yml, appcare.labels).

* intents: desk/intent_labels.yml, which the content editors see and keep up to date;
  ``intent_labels()`` reads it (ticket summaries, the monthly report).
* handoff reasons (``tickets.reason``): ``REASON_LABELS``, with the two variants the
  desk's queue (short) and the monthly report (capitalised) show.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import yaml

INTENT_LABELS_FILE = Path(__file__).resolve().parent.parent / "desk" / "intent_labels.yml"


def intent_labels() -> Dict[str, str]:
    """Dutch names of the intents (desk/intent_labels.yml), read on every call so the
    editors' changes count; intents without a name are left out, ``{}`` when the
    file is missing or broken."""
    try:
        labels = yaml.safe_load(INTENT_LABELS_FILE.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(labels, dict):
        return {}
    return {str(name): str(label).strip() for name, label in labels.items() if label}


# Why the assistant handed a conversation to the KCC (the reason of a ticket).
REASON_LABELS: Dict[str, str] = {
    "request_human": "vraagt om een medewerker",
    "urgent": "dringend (mogelijk gevaar of nood)",
    "personal_case": "persoonlijke zaak",
    "complaint": "klacht",
    "out_of_scope": "onderwerp buiten de assistent",
    "not_understood": "assistent begreep de vraag niet",
    "technical_failure": "kon niet automatisch beantwoord worden",
}
# The desk's queue has a narrow reason column: shorter words for two reasons.
DESK_REASON_LABELS: Dict[str, str] = {
    **REASON_LABELS, "out_of_scope": "buiten de assistent", "not_understood": "niet begrepen",
}
# The monthly report starts each label with a capital and names the cause of a failure.
REPORT_REASON_LABELS: Dict[str, str] = {
    **{reason: label[0].upper() + label[1:] for reason, label in REASON_LABELS.items()},
    "technical_failure": "Kon niet automatisch beantwoord worden (storing)",
}
