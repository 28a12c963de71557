"""Dutch names that staff, editors and the report read for the codes the assistant
stores, in one place (the citizens' texts are in appcare/labels.yml, appcare.labels).

* handoff reasons (``tickets.reason``): ``REASON_LABELS``, with the two variants the
  desk's queue (short) and the monthly report (capitalised) show.
"""
from __future__ import annotations

from typing import Dict

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
