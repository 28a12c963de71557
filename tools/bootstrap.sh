#!/usr/bin/env bash
# Creates .venv from requirements.lock (pip --no-deps), installs the project in
# editable mode and makes sure a Dutch spaCy pipeline is available.
# Idempotent: does nothing when the lock has not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP="$VENV/.lock.sha256"
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing requirements.lock (pip --no-deps; Rasa 3.6 runs on Python 3.11 from this lock)"
  "$VENV/bin/python" -m pip install -q --upgrade "pip>=23.2"
  # --ignore-requires-python: Rasa 3.6.21 declares <3.11 but works on 3.11 with these pins.
  "$VENV/bin/python" -m pip install -q --no-deps --ignore-requires-python -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$STAMP"
fi

"$VENV/bin/python" -m appcare.nlp_pipeline ensure
