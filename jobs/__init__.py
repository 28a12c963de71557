"""Production jobs run by the municipality's scheduler (systemd timers, cron, compose):
retention (``python -m jobs.retention``) and subject access and erasure
(``python -m jobs.subject_access``). Developer scripts live in tools/."""
