"""Performance report of the appcare assistant (issue 6).

* :mod:`report.metrics` reads the Rasa tracker store (the ``events`` table of Rasa's
  SQLTrackerStore, configured in endpoints.yml) and the KCC handoff tickets and
  computes every figure for a period; :func:`report.metrics.key_figures` gives the
  key figures as a JSON-serialisable dict (used by the KCC desk dashboard). It puts
  together :mod:`report.sources` (reading the stores), :mod:`report.period`,
  :mod:`report.labels`, :mod:`report.kcc_hours`, :mod:`report.conversations`
  (conversations from events), :mod:`report.stats` (key figures) and
  :mod:`report.tables` (one function per table).
* :mod:`report.render` writes a self-contained HTML report with charts and one CSV
  file per table.
* ``python -m report --from YYYY-MM-DD --to YYYY-MM-DD`` runs both;
  ``python -m report.simulate`` fills a fresh tracker store with simulated
  conversations through the real assistant (demo data).

Definitions of every figure: docs/report.md.
"""
