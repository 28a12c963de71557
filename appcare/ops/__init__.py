"""Operations: logs without personal data, Prometheus metrics, a quiet console and
the training step that trains only when its inputs changed."""
