"""A model the content editors put live survives a restart: `make run` does not
retrain over it; an explicit `make train` that makes a newer model takes over."""
from __future__ import annotations

import os
import time
from pathlib import Path

from appcare.plugins import live_model


def _model(models: Path, name: str, age: float) -> Path:
    path = models / name
    path.write_bytes(b"model")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_pointer_wins_over_the_newest_model(tmp_path: Path) -> None:
    published = _model(tmp_path, "published.tar.gz", 100)
    _model(tmp_path, "newer.tar.gz", 10)
    assert live_model.read(tmp_path) is None
    live_model.write(tmp_path, published)
    assert live_model.read(tmp_path) == published
    published.unlink()
    assert live_model.read(tmp_path) is None  # a pointer to a missing model is ignored


def test_check_and_after_train(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(live_model, "ROOT", tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    assert live_model.main(["check"]) == 1  # nothing published: make run trains when needed
    published = _model(models, "published.tar.gz", 100)
    live_model.write(models, published)
    assert live_model.main(["check"]) == 0 and "published.tar.gz" in capsys.readouterr().out
    assert live_model.main(["after-train"]) == 0 and live_model.read(models) == published  # rasa train made nothing
    _model(models, "developer.tar.gz", 1)
    assert live_model.main(["after-train"]) == 0
    assert live_model.read(models) is None and "developer.tar.gz" in capsys.readouterr().out


def test_served_is_the_live_model_else_the_newest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(live_model, "ROOT", tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    assert live_model.served() is None
    published = _model(models, "published.tar.gz", 100)
    newer = _model(models, "newer.tar.gz", 10)
    assert live_model.served() == newer == live_model.served(models)
    live_model.write(models, published)
    assert live_model.served() == published  # what `make run` serves: the editors' model


def test_required_stops_with_a_hint_when_there_is_no_model(tmp_path: Path) -> None:
    import pytest

    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(SystemExit, match="make train"):
        live_model.required(models)
    model = _model(models, "only.tar.gz", 10)
    assert live_model.required(models) == model
