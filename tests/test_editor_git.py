"""Optional git commit after a publish: only with APPCARE_EDITOR_GIT_COMMIT=1 and an
explicit APPCARE_PROJECT_DIR, with the editor as author; here in a throw-away repo."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from desk.editor.service import EditorService
from desk.settings import Settings
from desk.store import DeskStore
from tests.support.editor_helpers import make_project

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(project: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV)
    return subprocess.run(["git", "-C", str(project), *args], env=env, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def project(tmp_path):
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test", pytrace=False)
    project = make_project(tmp_path / "project")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    return project


def service(tmp_path, project: Path, **overrides) -> EditorService:
    settings = Settings.from_env(db_url=f"sqlite:///{tmp_path}/desk.db", project_dir=str(project), **overrides)
    return EditorService(settings, DeskStore(settings.db_url))


def test_publish_commit_has_the_editor_as_author(tmp_path, project):
    editor = service(tmp_path, project, git_commit=True)
    editor.nlu.add("passport_fees", ["hoeveel pegels moet ik dokken voor een paspoort"])
    (project / "models" / "ignored.tar.gz").write_bytes(b"x")
    note = editor._git_commit({"username": "eddy"}, "Redactie: nieuw model gepubliceerd")  # noqa: SLF001
    assert note == "Wijzigingen vastgelegd in git."
    log = git(project, "log", "-1", "--format=%an <%ae>|%s")
    assert log.strip() == "eddy <eddy@appcare.invalid>|Redactie: nieuw model gepubliceerd"
    assert git(project, "show", "--stat", "--format=", "HEAD").strip().startswith("data/nlu/passport_id.yml")
    assert "?? models/" in git(project, "status", "--porcelain")  # only content/ and data/nlu/ are committed
    assert editor._git_commit({"username": "eddy"}, "nothing new") == ""  # noqa: SLF001


def test_no_commit_without_the_setting_or_without_a_project_dir(tmp_path, project):
    editor = service(tmp_path, project)  # APPCARE_EDITOR_GIT_COMMIT not set
    editor.nlu.add("passport_fees", ["hoeveel pegels moet ik dokken voor een paspoort"])
    assert editor._git_commit({"username": "eddy"}, "x") == ""  # noqa: SLF001
    assert git(project, "log", "--format=%s").strip() == "start"
    settings = Settings.from_env(db_url=f"sqlite:///{tmp_path}/desk2.db", git_commit=True)  # the repository itself
    assert settings.project_dir is None
    repo_editor = EditorService(settings, DeskStore(settings.db_url))
    assert repo_editor._git_commit({"username": "eddy"}, "x") == ""  # noqa: SLF001 - never in the real repo


def test_env_switch_needs_an_explicit_project_dir(monkeypatch):
    monkeypatch.setenv("APPCARE_EDITOR_GIT_COMMIT", "1")
    monkeypatch.delenv("APPCARE_PROJECT_DIR", raising=False)
    assert Settings.from_env().git_commit is False
    monkeypatch.setenv("APPCARE_PROJECT_DIR", "/tmp/somewhere")
    assert Settings.from_env().git_commit is True
