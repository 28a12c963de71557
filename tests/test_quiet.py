"""The quiet console (appcare/ops/quiet.py): library deprecation warnings and Rasa's data
checks that do not apply here are hidden even where PYTHONWARNINGS is not enough;
other warnings and errors are shown; VERBOSE=1 shows everything. In subprocesses, so
pytest's own warning handling stays untouched."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict

import pytest

from tests.conftest import ROOT

SNIPPET = r"""
import warnings
from appcare.ops import quiet
quiet.install()
warnings.filterwarnings("once", category=DeprecationWarning)  # what Sanic does on import
warnings.warn("old api one", DeprecationWarning)
warnings.warn("old api two", PendingDeprecationWarning)
warnings.warn("The utterance 'utter_greet' is not used in any story or rule.", UserWarning)
warnings.warn("The intent 'EXTERNAL_kcc_close' is listed in the domain file, but is not found in the NLU training data.", UserWarning)
warnings.warn("The intent 'passport_fees' is listed in the domain file, but is not found in the NLU training data.", UserWarning)
warnings.resetwarnings()
warnings.warn("old api three", DeprecationWarning)
warnings.warn("a real problem", RuntimeWarning)
"""


def run_python(args, verbose: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    env: Dict[str, str] = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}  # as the Makefile exports
    env.pop("VERBOSE", None)
    if verbose:
        env["VERBOSE"] = "1"
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_library_noise_is_hidden_and_real_warnings_are_shown():
    err = run_python(["-c", SNIPPET]).stderr
    for hidden in ("old api", "utter_greet", "EXTERNAL_kcc_close"):
        assert hidden not in err, err
    assert "'passport_fees' is listed in the domain file" in err  # a real gap in the data
    assert "RuntimeWarning: a real problem" in err


def test_verbose_shows_everything():
    err = run_python(["-c", SNIPPET], verbose=True).stderr
    for shown in ("old api one", "old api three", "utter_greet", "EXTERNAL_kcc_close", "a real problem"):
        assert shown in err, err


def warning_lines(text: str) -> list:
    return [line for line in text.splitlines() if "Warning" in line]


def test_rasa_command_line_is_quiet_where_pythonwarnings_is_not_enough():
    plain = run_python([str(ROOT / ".venv" / "bin" / "rasa"), "--version"]
                       if (ROOT / ".venv" / "bin" / "rasa").exists() else ["-m", "rasa", "--version"])
    if not warning_lines(plain.stdout + plain.stderr):
        pytest.skip("this Rasa version prints no warnings on --version")
    quiet = run_python(["-m", "appcare.ops.quiet", "rasa", "--version"])
    assert quiet.returncode == 0 and "Rasa Version" in quiet.stdout
    assert warning_lines(quiet.stdout + quiet.stderr) == []
    verbose = run_python(["-m", "appcare.ops.quiet", "rasa", "--version"], verbose=True)
    assert warning_lines(verbose.stdout + verbose.stderr) != []


def test_rasa_data_validate_shows_only_its_own_lines():
    done = run_python(["-m", "appcare.ops.quiet", "rasa", "data", "validate", "--data", "data", "--domain", "domain",
                       "--config", "config.yml"], timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert warning_lines(output) == [], output[-3000:]
    assert "Validating intents" in output and len(output.splitlines()) < 20
