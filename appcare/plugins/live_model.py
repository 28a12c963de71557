"""Which model the content editors put live, so a restart keeps their decision.

Publishing or rolling back in the Redactie (desk/editor/service.py) writes the model's
file name to ``models/live-model.txt``. Without it `make run` would retrain from the
files on every restart: examples of a publish that was *refused* (or undone by a
rollback) would then go live unchecked. With the pointer, `make run` starts the
editors' model and does not retrain; an explicit `make train` by a developer trains
from the files and, when that makes a new model, removes the pointer.

    python -m appcare.plugins.live_model check        # exit 0 (and say so) when a published model is live
    python -m appcare.plugins.live_model after-train  # drop the pointer when make train made a newer model
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
POINTER_NAME = "live-model.txt"


def pointer(models_dir: Path) -> Path:
    return Path(models_dir) / POINTER_NAME


def read(models_dir: Path) -> Optional[Path]:
    """The model the editors put live, when the pointer names a model that exists."""
    try:
        name = pointer(models_dir).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    model = Path(models_dir) / name
    return model if name and "/" not in name and model.is_file() else None


def write(models_dir: Path, model: Path) -> None:
    """Records ``model`` (a file directly in ``models_dir``) as the live model."""
    target = pointer(models_dir)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(Path(model).name + "\n", encoding="utf-8")
    tmp.replace(target)


def clear(models_dir: Path) -> None:
    pointer(models_dir).unlink(missing_ok=True)


def newest(models_dir: Path) -> Optional[Path]:
    """The most recently written ``*.tar.gz`` in ``models_dir`` (what `make train` made last)."""
    models = sorted(Path(models_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


def served(models_dir: Optional[Path] = None) -> Optional[Path]:
    """The model `make run` serves: the one the editors put live, else the newest in
    ``models_dir`` (default: the repository's models/); ``None`` when there is none.

    Every tool, the report simulation and the tests that start the assistant use this."""
    models_dir = ROOT / "models" if models_dir is None else Path(models_dir)
    return read(models_dir) or newest(models_dir)


def required(models_dir: Optional[Path] = None) -> Path:
    """:func:`served`, or a stop with the hint to train first (tools and tests that need a model)."""
    model = served(models_dir)
    if model is None:
        raise SystemExit("no trained model in models/: run `make train` first")
    return model


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    models_dir = ROOT / "models"
    command = args[0] if args else "check"
    live = read(models_dir)
    if command == "check":
        if live is None:
            return 1
        print(f"[appcare] model published in the Redactie: {live.name} (not retrained; "
              "`make train` trains from the files)")
        return 0
    if command == "after-train":
        latest = newest(models_dir)
        if live is not None and latest is not None and latest != live and latest.stat().st_mtime > live.stat().st_mtime:
            clear(models_dir)
            print(f"[appcare] make train made {latest.name}; it replaces the Redactie's model {live.name}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
