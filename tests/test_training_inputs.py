"""`make train` trains only when the model's inputs changed (appcare/ops/training.py): the
fingerprint of data/, domain/, the effective config, the component code and the
libraries, recorded next to each model. On a copy of the project's files; no training."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appcare.ops import training
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files a model is trained from, copied: data/, domain/, appcare/, the lock and an
    effective config, plus a models/ directory with one model archive."""
    for name in ("data", "domain", "appcare"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    (tmp_path / "models").mkdir()
    shutil.copy(ROOT / "config.yml", tmp_path / "models" / "config.effective.yml")
    (tmp_path / "models" / "20261201-180026-brave-fox.tar.gz").write_bytes(b"model")
    return tmp_path


def append(path: Path, text: str = "\n# edited\n") -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def inputs(project: Path) -> dict:
    return training.current_inputs(project / "models" / "config.effective.yml", project)


def needed(project: Path) -> tuple:
    return training.needs_training(project / "models", inputs(project))


def test_the_components_code_includes_what_they_import(project):
    files = {p.relative_to(project).as_posix() for p in
             training.component_sources(project / "models" / "config.effective.yml", project)}
    assert {"appcare/plugins/nlu/intent_classifier.py", "appcare/plugins/nlu/sentence_featurizer.py", "appcare/plugins/nlu/entities.py",
            "appcare/plugins/handoff_policy.py"} <= files
    assert {"appcare/plugins/nlu/dates.py", "appcare/plugins/nlu/streets.py", "appcare/pii.py"} <= files  # imported helpers
    assert "appcare/plugins/action_server.py" not in files and "appcare/plugins/live_model.py" not in files


def test_a_model_without_record_is_retrained_and_one_with_the_same_inputs_is_not(project):
    model = project / "models" / "20261201-180026-brave-fox.tar.gz"
    assert needed(project) == (True, "20261201-180026-brave-fox.tar.gz has no record of what it was trained from")
    training.write_record(model, inputs(project))
    assert (project / "models" / "20261201-180026-brave-fox.inputs.json").is_file()
    is_needed, why = needed(project)
    assert not is_needed and why.startswith("nothing changed since 20261201-180026-brave-fox.tar.gz")
    # rewriting a file with the same content (as `nlp_pipeline config` does) changes nothing
    config = project / "models" / "config.effective.yml"
    config.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    os.utime(next((project / "data").rglob("*.yml")))  # touched, not changed
    assert needed(project)[0] is False


@pytest.mark.parametrize("change,label", [
    (lambda p: append(next((p / "data" / "nlu").glob("*.yml"))), "data/"),
    (lambda p: (p / "data" / "rules" / "extra.yml").write_text("version: '3.1'\n"), "data/"),
    (lambda p: append(next((p / "domain").glob("*.yml"))), "domain/"),
    (lambda p: append(p / "models" / "config.effective.yml"), "config"),
    (lambda p: append(p / "appcare" / "plugins" / "nlu" / "dates.py"), "component code"),
    (lambda p: append(p / "requirements.lock"), "libraries"),
])
def test_a_real_change_retrains_and_says_what_changed(project, change, label):
    training.write_record(project / "models" / "20261201-180026-brave-fox.tar.gz", inputs(project))
    change(project)
    assert needed(project) == (True, f"changed since 20261201-180026-brave-fox.tar.gz: {label}")


def test_changes_that_do_not_reach_the_model_do_not_retrain(project):
    training.write_record(project / "models" / "20261201-180026-brave-fox.tar.gz", inputs(project))
    append(project / "appcare" / "plugins" / "live_model.py")  # not imported by a component
    (project / "data" / ".nlu.yml.swp").write_text("editor swap file")
    assert needed(project)[0] is False


def test_only_the_newest_model_counts(project):
    old = project / "models" / "20261201-180026-brave-fox.tar.gz"
    training.write_record(old, inputs(project))
    newer = project / "models" / "20261202-090000-calm-owl.tar.gz"
    newer.write_bytes(b"model")
    os.utime(newer, (time.time() + 5, time.time() + 5))
    assert needed(project) == (True, "20261202-090000-calm-owl.tar.gz has no record of what it was trained from")


def test_make_train_with_nothing_changed_says_so_and_does_not_start_rasa(project, capsys):
    training.write_record(project / "models" / "20261201-180026-brave-fox.tar.gz", inputs(project))
    config = project / "models" / "config.effective.yml"
    assert training.train(config, root=project, models_dir=project / "models") == 0
    out = capsys.readouterr().out
    assert out.startswith("[train] nothing changed since 20261201-180026-brave-fox.tar.gz") and "not retraining" in out
    assert training.train(config, check_only=True, root=project, models_dir=project / "models") == 0


def test_the_command_line_check_on_the_project():
    """`python -m appcare.ops.training --check` answers in well under a few seconds."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "appcare.ops.training", "--check", "--config", str(ROOT / "config.yml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1) and done.stdout.startswith("[train] "), done.stdout + done.stderr
    assert time.monotonic() - started < 20
