#!/usr/bin/env bash
# Creates .venv from requirements.lock (pip --no-deps), installs the project in
# editable mode and makes sure a Dutch spaCy pipeline is available.
# Idempotent: does nothing when the lock has not changed since the last run.
# pip's own output (index and find-links warnings, progress) goes to var/bootstrap-pip.log;
# when pip fails, its last lines are printed. VERBOSE=1 shows pip's output as it comes.
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
PIP_LOG=var/bootstrap-pip.log
pip_install() {
  if [ -n "${VERBOSE:-}" ] && [ "${VERBOSE}" != "0" ]; then
    "$VENV/bin/python" -m pip install "$@"
    return
  fi
  echo "\$ pip install $*" >>"$PIP_LOG"
  if ! "$VENV/bin/python" -m pip install -q "$@" >>"$PIP_LOG" 2>&1; then
    echo "[bootstrap] pip install $* failed; the last lines of $PIP_LOG:" >&2
    tail -n 40 "$PIP_LOG" >&2
    return 1
  fi
}

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing requirements.lock (pip --no-deps; Rasa 3.6 runs on Python 3.11 from this lock; log: $PIP_LOG)"
  mkdir -p var && : >"$PIP_LOG"
  pip_install --upgrade "pip>=23.2"
  # --ignore-requires-python: Rasa 3.6.21 declares <3.11 but works on 3.11 with these pins.
  pip_install --no-deps --ignore-requires-python -r requirements.lock
  pip_install --no-deps --no-build-isolation -e .
  echo "$want" > "$STAMP"
  echo "[bootstrap] installed"
fi

"$VENV/bin/python" -m appcare.plugins.nlp_pipeline ensure
