"""Shared library of the appcare assistant: content, clock, handoff store, privacy helpers."""
