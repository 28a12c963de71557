"""Rasa plug-ins: the handoff policy, the Dutch NLP pipeline builder and its
components (nlu/), the editors' live model, the pseudonymising event broker and the
action server with its token."""
