"""`make train`: trains a Rasa model only when something it is trained from changed.

Why this exists: Rasa 3.6 has no "nothing changed" check of its own. Every
`rasa train` validates the data and packages a new model; only its training cache
(``.rasa/cache``) makes unchanged components quick. That cache misses after every
training in which the CRF entity extractor was trained: the CRF writes its BILOU tags
into the training data that the other NLU components share, so the components that
happen to be trained after it (the intent classifier, the synonym mapper) are cached
under a fingerprint that the next run never computes again. `make run` followed by
`make test` therefore trained the intent classifier twice (minutes on a 2-core machine).

So the inputs of a model are fingerprinted here and stored next to it
(``models/<model>.inputs.json``):

* ``config``: the effective Rasa config (``models/config.effective.yml``, which names
  the Dutch spaCy pipeline in use);
* ``data`` and ``domain``: every file below ``data/`` and ``domain/``;
* ``code``: the source of the custom components named in the config and of every
  appcare module they import (recursively), and ``appcare/plugins/nlp_pipeline.py``;
* ``libraries``: ``requirements.lock``, the Python version and the installed
  ``nl_core_news_sm`` version, if any.

When the newest model in ``models/`` was trained from exactly these inputs, nothing is
trained. Otherwise `rasa train` runs (with its cache) and the new model gets its record.
A model without a record (trained by hand or in the Redactie) is always retrained.

    python -m appcare.ops.training            # train when needed (what `make train` runs)
    python -m appcare.ops.training --force    # train anyway, without Rasa's cache (`make train FORCE=1`)
    python -m appcare.ops.training --check    # only say whether a training is needed (exit 0: no, 1: yes)
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from appcare.ops import quiet
from appcare.plugins import live_model
from appcare.plugins.nlp_pipeline import EFFECTIVE_CONFIG, STOCK_NAME

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
PARTS = ("config", "data", "domain", "code", "libraries")
LABELS = {"config": "config", "data": "data/", "domain": "domain/", "code": "component code",
          "libraries": "libraries"}


# ------------------------------------------------------------------ fingerprints
def _hash_files(files: Iterable[Path], root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _tree(directory: Path) -> List[Path]:
    """Every file below ``directory`` except hidden ones (editor swap files, .DS_Store)."""
    return [p for p in directory.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)]


def _module_file(module: str, root: Path = ROOT) -> Optional[Path]:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> Set[str]:
    """The modules one of our source files imports (anywhere in the file)."""
    found: Set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def component_sources(config: Path, root: Path = ROOT) -> List[Path]:
    """Source files of the config's custom components and of the modules of ours they
    import, recursively (Rasa's own fingerprint only covers the component class)."""
    import yaml

    document = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    names = [str(item.get("name", "")) for key in ("pipeline", "policies") for item in document.get(key) or []]
    todo = [name.rpartition(".")[0] for name in names if "." in name]
    seen: Set[str] = set()
    files: List[Path] = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, root)
        if path is None:  # a library module (rasa, sklearn, ...): versions are in requirements.lock
            continue
        files.append(path)
        parent = module.rpartition(".")[0]
        if parent:
            todo.append(parent)  # the package's __init__ runs on import too
        todo.extend(_imported_modules(path, module))
    return files


def current_inputs(config: Path = EFFECTIVE_CONFIG, root: Path = ROOT) -> Dict[str, str]:
    """The fingerprint of each input part (see the module docstring)."""
    try:
        stock = metadata.version(STOCK_NAME)
    except metadata.PackageNotFoundError:
        stock = "not installed"
    libraries = hashlib.sha256()
    lock = root / "requirements.lock"
    libraries.update(lock.read_bytes() if lock.is_file() else b"no lock")
    libraries.update(f"\0python {platform.python_version()}\0{STOCK_NAME} {stock}".encode())
    return {
        "config": _hash_files([config], config.parent),
        "data": _hash_files(_tree(root / "data"), root),
        "domain": _hash_files(_tree(root / "domain"), root),
        "code": _hash_files(component_sources(config, root) + [root / "appcare" / "plugins" / "nlp_pipeline.py"], root),
        "libraries": libraries.hexdigest(),
    }


# ------------------------------------------------------------------ records
def record_path(model: Path) -> Path:
    name = model.name[:-len(".tar.gz")] if model.name.endswith(".tar.gz") else model.stem
    return model.with_name(f"{name}.inputs.json")


def write_record(model: Path, inputs: Dict[str, str]) -> Path:
    target = record_path(model)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model": model.name, "inputs": inputs}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def read_record(model: Path) -> Optional[Dict[str, str]]:
    try:
        inputs = json.loads(record_path(model).read_text(encoding="utf-8")).get("inputs")
    except (OSError, ValueError, AttributeError):
        return None
    return inputs if isinstance(inputs, dict) else None


def needs_training(models_dir: Path, inputs: Dict[str, str]) -> Tuple[bool, str]:
    """(True, why) when the newest model was not trained from ``inputs``."""
    newest = live_model.newest(models_dir)
    if newest is None:
        return True, "no model in models/ yet"
    recorded = read_record(newest)
    if recorded is None:
        return True, f"{newest.name} has no record of what it was trained from"
    changed = [LABELS[part] for part in PARTS if recorded.get(part) != inputs.get(part)]
    if changed:
        return True, f"changed since {newest.name}: {', '.join(changed)}"
    return False, f"nothing changed since {newest.name} (data/, domain/, config, component code, libraries)"


# ------------------------------------------------------------------ training
def rasa_train_command(config: Path, force: bool, root: Path = ROOT, models_dir: Path = MODELS) -> List[str]:
    command = [sys.executable, "-m", "appcare.ops.quiet", "rasa", "train", "--config", os.path.relpath(config, root),
               "--data", "data", "--domain", "domain", "--out", os.path.relpath(models_dir, root)]
    return command + ([] if quiet.verbose() else ["--quiet"]) + (["--force"] if force else [])


def train(config: Path = EFFECTIVE_CONFIG, force: bool = False, check_only: bool = False,
          root: Path = ROOT, models_dir: Path = MODELS) -> int:
    """Trains when needed (or forced); 0 when the newest model fits the inputs afterwards."""
    inputs = current_inputs(config, root)
    needed, why = needs_training(models_dir, inputs)
    if check_only:
        print(f"[train] {'training needed: ' if needed else ''}{why}")
        return 1 if needed else 0
    if not needed and not force:
        print(f"[train] {why}; not retraining (`make train FORCE=1` trains anyway)")
        return 0
    print(f"[train] training a new model ({'forced' if force else why}); this takes a few minutes", flush=True)
    before = live_model.newest(models_dir)
    started = time.monotonic()
    code = subprocess.call(rasa_train_command(config, force, root, models_dir), cwd=root)
    if code != 0:
        print(f"[train] rasa train failed (exit status {code})")
        return code
    model = live_model.newest(models_dir)
    if model is None or model == before:
        print("[train] rasa train made no new model in models/")
        return 1
    write_record(model, inputs)
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print(f"[train] trained models/{model.name} in {minutes}m {seconds:02d}s")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=EFFECTIVE_CONFIG)
    parser.add_argument("--force", action="store_true", help="train even when nothing changed, without Rasa's cache")
    parser.add_argument("--check", action="store_true", help="only say whether a training is needed")
    args = parser.parse_args(argv)
    return train(args.config.resolve(), force=args.force, check_only=args.check)


if __name__ == "__main__":
    sys.exit(main())
