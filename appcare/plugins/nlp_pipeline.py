"""Selects or builds the Dutch spaCy pipeline used by Rasa's SpacyNLP.

Two pipelines are supported:

* ``nl_core_news_sm`` - spaCy's trained Dutch pipeline. Installed from spaCy's
  release site when that site is reachable.
* ``nl_appcare_offline`` - built here from spaCy's own Dutch language data
  (tokenizer rules, stop words, the lookup lemmatizer of spacy-lookups-data) plus
  the municipalities' gazetteers (street names, desks) as an entity ruler. It is
  used on machines that cannot download ``nl_core_news_sm`` (CI, air-gapped
  municipal servers). It has its own name and never claims to be
  ``nl_core_news_sm``.

``python -m appcare.plugins.nlp_pipeline ensure`` makes one of them available,
``python -m appcare.plugins.nlp_pipeline config`` writes the effective Rasa config that
points SpacyNLP at the pipeline in use and prints its path.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOCK_NAME = "nl_core_news_sm"
STOCK_VERSION = "3.4.0"
STOCK_URL = (
    "https://github.com/explosion/spacy-models/releases/download/"
    f"{STOCK_NAME}-{STOCK_VERSION}/{STOCK_NAME}-{STOCK_VERSION}-py3-none-any.whl"
)
OFFLINE_NAME = "nl_appcare_offline"
OFFLINE_DIR = PROJECT_ROOT / "models" / "spacy" / OFFLINE_NAME
LOOKUPS_DIR = PROJECT_ROOT / "data" / "nlu" / "lookups"
BASE_CONFIG = PROJECT_ROOT / "config.yml"
EFFECTIVE_CONFIG = PROJECT_ROOT / "models" / "config.effective.yml"

logger = logging.getLogger(__name__)


def stock_installed() -> bool:
    """True when spaCy's ``nl_core_news_sm`` package can be imported."""
    return importlib.util.find_spec(STOCK_NAME) is not None


def offline_built() -> bool:
    return (OFFLINE_DIR / "meta.json").exists()


def pipeline_in_use() -> str:
    """Name of the pipeline that training and serving use on this machine."""
    if os.environ.get("APPCARE_NLP_PIPELINE") == "offline":
        return OFFLINE_NAME
    return STOCK_NAME if stock_installed() else OFFLINE_NAME


def try_install_stock(timeout_s: int = 20) -> bool:
    """Tries to pip-install ``nl_core_news_sm`` from spaCy's release site."""
    if os.environ.get("APPCARE_NLP_PIPELINE") == "offline":
        return False
    cmd = [
        sys.executable, "-m", "pip", "install", "-q", "--no-deps",
        "--timeout", "8", "--retries", "0", STOCK_URL,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and stock_installed()


def _gazetteer_names() -> List[tuple]:
    """(label, name) pairs from the Rasa lookup tables for streets, areas and desks."""
    from ruamel.yaml import YAML

    labels = {"street": "STREET", "area": "AREA", "desk": "DESK"}
    names = []
    for path in sorted(LOOKUPS_DIR.glob("*.yml")):
        document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        for block in document.get("nlu", []):
            label = labels.get(block.get("lookup"))
            if not label:
                continue
            for line in str(block.get("examples", "")).splitlines():
                name = line.strip().lstrip("-").strip()
                if name:
                    names.append((label, name))
    return names


def _gazetteer_patterns() -> List[dict]:
    patterns = []
    for label, name in _gazetteer_names():
        patterns.append({"label": label, "pattern": [{"LOWER": t.lower()} for t in name.split()]})
    return patterns


def build_offline(target: Path = OFFLINE_DIR) -> Path:
    """Builds and saves the offline Dutch pipeline; returns its directory."""
    import spacy

    nlp = spacy.blank("nl")
    # Lookup lemmatizer with the Dutch tables of spacy-lookups-data.
    lemmatizer = nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    lemmatizer.initialize()
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(_gazetteer_patterns())
    nlp.meta.update(
        {
            "name": "appcare_offline",
            "version": "1.0.0",
            "description": (
                "Offline Dutch pipeline of appcare: spaCy's Dutch tokenizer and "
                "stop words, lookup lemmatizer (spacy-lookups-data) and municipal "
                "gazetteers. Not nl_core_news_sm: no tagger, parser or vectors."
            ),
            "author": "appcare",
            "license": "MIT",
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(target)
    return target


def ensure(force_offline_rebuild: bool = False) -> str:
    """Makes a Dutch pipeline available and returns the name of the one in use."""
    if not stock_installed() and os.environ.get("APPCARE_NLP_PIPELINE") != "offline":
        if try_install_stock():
            print(f"[nlp] installed {STOCK_NAME} {STOCK_VERSION}")
    name = pipeline_in_use()
    if name == OFFLINE_NAME and (force_offline_rebuild or not offline_built() or _gazetteers_newer()):
        build_offline()
        print(f"[nlp] {STOCK_NAME} is not available here; built offline pipeline {OFFLINE_NAME}")
    print(f"[nlp] Dutch spaCy pipeline in use: {name}")
    return name


def _gazetteers_newer() -> bool:
    built = (OFFLINE_DIR / "meta.json").stat().st_mtime
    return any(p.stat().st_mtime > built for p in LOOKUPS_DIR.glob("*.yml"))


def spacy_model_reference(name: Optional[str] = None) -> str:
    """What SpacyNLP's ``model`` setting must be for the pipeline in use."""
    name = name or pipeline_in_use()
    if name == STOCK_NAME:
        return STOCK_NAME
    return os.path.relpath(OFFLINE_DIR, Path.cwd())


def write_effective_config(base: Path = BASE_CONFIG, out: Path = EFFECTIVE_CONFIG) -> Path:
    """Writes ``config.yml`` with SpacyNLP pointed at the pipeline in use."""
    from ruamel.yaml import YAML

    yaml = YAML()
    config = yaml.load(base.read_text(encoding="utf-8"))
    reference = spacy_model_reference()
    for component in config.get("pipeline", []):
        if component.get("name") == "SpacyNLP":
            component["model"] = reference
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        handle.write(
            f"# Generated from {base.name} by appcare.plugins.nlp_pipeline; "
            f"Dutch spaCy pipeline: {pipeline_in_use()}\n"
        )
        yaml.dump(config, handle)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="install nl_core_news_sm or build the offline pipeline")
    sub.add_parser("build-offline", help="(re)build the offline pipeline")
    sub.add_parser("which", help="print the pipeline in use")
    cfg = sub.add_parser("config", help="write the effective Rasa config, print its path")
    cfg.add_argument("--base", type=Path, default=BASE_CONFIG)
    cfg.add_argument("--out", type=Path, default=EFFECTIVE_CONFIG)
    args = parser.parse_args(argv)
    if args.command == "ensure":
        ensure()
    elif args.command == "build-offline":
        print(build_offline())
    elif args.command == "which":
        print(pipeline_in_use())
    elif args.command == "config":
        print(os.path.relpath(write_effective_config(args.base, args.out), Path.cwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
