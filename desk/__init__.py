"""KCC desk: web pages for staff of the klantcontactcentrum to pick up handed-over
conversations, answer the citizen through Rasa and give the conversation back to
the bot. Start with ``python -m desk``; see docs/desk.md.
"""
from __future__ import annotations


def create_app(*args, **kwargs):
    """Lazy import so ``python -m desk create-user`` does not load Sanic."""
    from desk.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
