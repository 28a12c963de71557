"""Benchmark for `make bench`: NLU quality (ours vs. stock), training time and memory,
reply latency and throughput through the REST channel with the action server, and the
independent dev set (../shared/eval, tools/devset.py) run against full models of both
pipelines plus a non-Dutch intent check.

Prints a table and writes bench/results/bench-<timestamp>.json. Options:
``--skip-stock`` (no stock pipeline), ``--skip-devset`` (no dev-set stage),
``--messages N`` (latency run size, default 200), ``--quick`` (= --skip-stock
--messages 50), ``--candidates`` (also DIET and Rasa's LogisticRegressionClassifier in
our pipeline, full models on the held-out file and the dev set). Configs are never changed by the options. See docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

import requests
from ruamel.yaml import YAML

from appcare.ops import processes
from appcare.stats import percentile
from tools import devset

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOLDOUT = ROOT / "tests" / "nlu_holdout.yml"
RESULTS_DIR = ROOT / "bench" / "results"
GB = 1024 ** 3
TARGETS = {"macro_f1": 0.95, "gain_points": 10.0, "p50_ms": 60.0, "p95_ms": 150.0,
           "train_s": 180.0, "memory_gb": 1.5,
           "devset_success_pct": devset.MIN_SUCCESS_PCT, "devset_gain_points": 10.0}
STOCK_PIPELINE = [
    {"name": "WhitespaceTokenizer"}, {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"}, {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
    {"name": "EntitySynonymMapper"},
    {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]


# The trained entity model of a pipeline, whose report `rasa test nlu` writes.
ENTITY_MODELS = ("CRFEntityExtractor", "DIETClassifier")
# Other ways to classify intents, compared with ours by `--candidates` (docs/bench.md).
COUNT_FEATURES = [
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer", "ngram_range": [1, 2]},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 2, "max_ngram": 5},
]


def candidate_pipelines(ours: List[Dict]) -> Dict[str, List[Dict]]:
    """Our pipeline with its intent (and entity) model swapped for Rasa's own:
    ``diet-sentence``: DIET for intents and entities on sparse n-grams plus the same
    sentence vector (60 epochs, no transformer); ``rasa-logreg``: Rasa's
    LogisticRegressionClassifier on n-gram counts plus the vector, CRF for entities."""
    names = [c["name"].rsplit(".", 1)[-1] for c in ours]
    intent, crf = names.index("SentenceIntentClassifier"), names.index("CRFEntityExtractor")
    diet = {"name": "DIETClassifier", "epochs": 60, "number_of_transformer_layers": 0,
            "constrain_similarities": True, "random_seed": 42}
    return {
        "diet-sentence": ours[:intent] + COUNT_FEATURES + [diet] + ours[crf + 1:],
        "rasa-logreg": ours[:intent] + COUNT_FEATURES + [{"name": "LogisticRegressionClassifier", "max_iter": 1000}]
        + ours[intent + 1:],
    }


def child_env(tmp: Path, cache_name: str) -> Dict[str, str]:
    """Environment of child processes: quiet TF, no telemetry, private caches and DBs."""
    env = devset.server_env(tmp)
    env["RASA_CACHE_DIRECTORY"] = str(tmp / f"cache-{cache_name}")  # cold training, no shared cache
    env["APPCARE_DB_URL"] = f"sqlite:///{tmp / 'appcare-bench.db'}"  # tickets stay out of var/
    return env


def run_measured(cmd: List[str], log: Path, env: Dict[str, str]) -> Dict[str, float]:
    """Runs a command to completion; returns wall and CPU seconds and peak RSS (ru_maxrss)."""
    started = time.monotonic()
    # in our process group: a Ctrl-C in the terminal reaches it as well
    proc = processes.start(cmd, log=log, env=env, new_group=False)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: do not leave a training process behind
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{devset.log_tail(log)}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_gb": round(usage.ru_maxrss * 1024 / GB, 3)}


def write_configs(tmp: Path) -> Dict[str, Path]:
    """Writes our effective config and the stock `rasa init` config (same policies)."""
    ours = tmp / "config.ours.yml"
    subprocess.run([sys.executable, "-m", "appcare.plugins.nlp_pipeline", "config", "--out", str(ours)],
                   cwd=ROOT, check=True, capture_output=True)
    yaml = YAML()
    policies = yaml.load((ROOT / "config.yml").read_text(encoding="utf-8"))["policies"]
    configs = {"ours": ours, "stock": tmp / "config.stock.yml"}
    pipelines = {"stock": STOCK_PIPELINE,
                 **candidate_pipelines(YAML(typ="safe").load(ours.read_text(encoding="utf-8"))["pipeline"])}
    for name, pipeline in pipelines.items():
        configs[name] = tmp / f"config.{name}.yml"
        with configs[name].open("w", encoding="utf-8") as handle:
            yaml.dump({"language": "nl", "pipeline": pipeline, "policies": policies}, handle)
    return configs


def train(config: Path, tmp: Path, name: str, nlu_only: bool) -> Dict:
    """Trains a model from data/ and domain/ into tmp; returns timing, memory and model path."""
    out = tmp / f"models-{name}"
    cmd = [str(BIN / "rasa"), "train", *(["nlu", "--nlu", "data"] if nlu_only else ["--data", "data"]),
           "--config", str(config), "--domain", "domain", "--out", str(out),
           "--fixed-model-name", name, "--quiet"]
    result = run_measured(cmd, tmp / f"train-{name}.log", child_env(tmp, name))
    result["model"] = str(next(out.glob(f"{name}*.tar.gz")))
    return result


def evaluate_nlu(model: str, tmp: Path, name: str) -> Dict[str, Optional[float]]:
    """Runs `rasa test nlu` on the held-out file; returns intent and entity scores."""
    out = tmp / f"test-{name}"
    cmd = [str(BIN / "rasa"), "test", "nlu", "--nlu", str(HOLDOUT), "--model", model,
           "--out", str(out), "--no-plot"]
    run_measured(cmd, tmp / f"test-{name}.log", child_env(tmp, name))
    intents = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    scores = {"intent_accuracy": intents["accuracy"], "intent_macro_f1": intents["macro avg"]["f1-score"],
              "entity_micro_f1": None, "entity_macro_f1": None}
    entity_report = next((out / f"{name}_report.json" for name in ENTITY_MODELS
                          if (out / f"{name}_report.json").exists()), None)
    if entity_report is not None:
        entities = json.loads(entity_report.read_text(encoding="utf-8"))
        micro = entities.get("micro avg", {}).get("f1-score", entities.get("accuracy"))
        scores.update(entity_micro_f1=micro, entity_macro_f1=entities["macro avg"]["f1-score"])
    return {key: (round(value, 4) if value is not None else None) for key, value in scores.items()}


def holdout_texts() -> List[str]:
    """Plain example texts of tests/nlu_holdout.yml (entity annotations removed)."""
    document = YAML(typ="safe").load(HOLDOUT.read_text(encoding="utf-8"))
    texts = []
    for block in document.get("nlu", []):
        for line in str(block.get("examples", "")).splitlines():
            text = re.sub(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})", r"\1", line.strip().lstrip("-").strip())
            if text:
                texts.append(text)
    return texts


def tree_rss_gb(pid: int) -> float:
    """VmRSS of a process plus all its descendants, from /proc."""
    parents: Dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        tree.update(children)
        frontier.extend(children)
    total_kb = 0
    for member in tree:
        try:
            status = Path(f"/proc/{member}/status").read_text()
            total_kb += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        except (OSError, AttributeError):
            continue
    return round(total_kb * 1024 / GB, 3)


def send_messages(url: str, texts: List[str], prefix: str, senders: int = 50) -> Dict[str, list]:
    """Posts texts sequentially (senders in rotation); returns latencies (ms) and empty replies."""
    result: Dict[str, list] = {"latencies": [], "empty": []}
    session = requests.Session()
    for index, text in enumerate(texts):
        payload = {"sender": f"{prefix}-{index % senders}", "message": text}
        started = time.perf_counter()
        reply = session.post(url, json=payload, timeout=30)
        result["latencies"].append((time.perf_counter() - started) * 1000)
        reply.raise_for_status()
        if not reply.json():
            result["empty"].append(text)
    return result


def pick(texts: List[str], count: int, offset: int = 0) -> List[str]:
    """count texts cycling through the hold-out examples."""
    return [texts[(offset + i) % len(texts)] for i in range(count)]


def measure_serving(model: str, tmp: Path, messages: int) -> Dict:
    """Starts the servers, measures latency, throughput and memory, always stops them."""
    with devset.serving(model, tmp, env=child_env(tmp, "serve"), credentials="rest:\n") as servers:
        url, texts = servers.webhook, holdout_texts()
        send_messages(url, pick(texts, 10), "bench-warmup")
        started = time.perf_counter()
        sequential = send_messages(url, pick(texts, messages, 10), "bench-seq")
        sequential_s = time.perf_counter() - started
        concurrent = measure_concurrent(url, texts, threads=4, per_thread=max(messages // 4, 10))
        memory = {name: tree_rss_gb(proc.pid) for name, proc in servers.processes.items()}
    latencies, empty = sequential["latencies"], sequential["empty"]
    return {"messages": messages, "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "sequential_msg_per_s": round(messages / sequential_s, 1),
            "empty_replies": len(empty), "empty_reply_texts": sorted(set(empty)), **concurrent,
            "rss_rasa_gb": memory["rasa"], "rss_actions_gb": memory["actions"],
            "rss_total_gb": round(memory["rasa"] + memory["actions"], 3)}


def measure_concurrent(url: str, texts: List[str], threads: int, per_thread: int) -> Dict:
    """threads senders in parallel, each sending per_thread messages; returns throughput."""
    errors: List[BaseException] = []

    def worker(index: int) -> None:
        try:
            send_messages(url, pick(texts, per_thread, index * per_thread), f"bench-par{index}")
        except Exception as exc:  # noqa: BLE001 - reported after join
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if errors:
        raise RuntimeError(f"concurrent run failed: {errors[0]}")
    return {"concurrent": f"{threads}x{per_thread}",
            "concurrent_msg_per_s": round(threads * per_thread / (time.perf_counter() - started), 1)}


def row(label: str, ours, stock="", diff="", target: str = "", ok: Optional[bool] = None) -> str:
    """One formatted table line."""
    mark = "" if ok is None else ("OK" if ok else "MISS")
    return f"{label:<30}{ours!s:>10}{stock!s:>10}{diff!s:>10}  {target:<22}{mark}"


def print_table(result: Dict) -> None:
    """Prints the readable summary table of the stages that produced results."""
    print("\n" + row("metric", "ours", "stock", "diff", "target") + "\n" + "-" * 86)
    ours, stock = result["nlu"].get("ours"), result["nlu"].get("stock")
    for key in ("intent_accuracy", "intent_macro_f1", "entity_micro_f1", "entity_macro_f1") if ours else ():
        mine, base = ours[key], (stock or {}).get(key)
        diff = f"{(mine - base) * 100:+.1f} pt" if mine is not None and base is not None else ""
        target, ok = "", None
        if key == "intent_macro_f1":
            target, ok = ">= 0.95", mine >= TARGETS["macro_f1"]
        print(row(key.replace("_", " "), mine, "" if base is None else base, diff, target, ok))
    for name, t in result["nlu_training"].items():
        label = f"{'' if name == 'ours' else 'stock '}{'full' if t.get('kind') == 'full' else 'NLU'} train s / GB"
        print(row(label, f"{t['seconds']} / {t['peak_gb']}", target=f"CPU {t['cpu_seconds']} s"))
    if "full_training" in result:
        full = result["full_training"]
        print(row("full train (s)", full["seconds"], target="<= 180 s", ok=full["seconds"] <= TARGETS["train_s"]))
        print(row("full train CPU (s) / peak GB", f"{full['cpu_seconds']} / {full['peak_gb']}"))
    if "serving" in result:
        print_serving(result["serving"])
    if "ours" in result.get("devset", {}):
        print_devset(result["devset"])


def print_serving(serve: Dict) -> None:
    """Table lines of the latency stage."""
    print(row("latency p50 (ms)", serve["p50_ms"], target="<= 60 ms", ok=serve["p50_ms"] <= TARGETS["p50_ms"]))
    print(row("latency p95 (ms)", serve["p95_ms"], target="<= 150 ms", ok=serve["p95_ms"] <= TARGETS["p95_ms"]))
    print(row("latency p99 (ms)", serve["p99_ms"]))
    print(row("msg/s sequential", serve["sequential_msg_per_s"],
              target=f"{serve['messages']} msgs, {serve['empty_replies']} empty"))
    print(row("msg/s concurrent", serve["concurrent_msg_per_s"], target=serve["concurrent"]))
    print(row("RSS rasa + actions (GB)", serve["rss_total_gb"], target="<= 1.5 GB",
              ok=serve["rss_total_gb"] <= TARGETS["memory_gb"]))


def print_devset(section: Dict) -> None:
    """Table lines of the dev-set stage (evaluate.py summaries of full models, non-Dutch check)."""
    ours, stock = section["ours"], section.get("stock")
    counts = ours["summary"].get("messages", {}).get("n"), ours["summary"].get("conversations", {}).get("n")
    print(f"dev set {section['folder']} ({counts[0]} messages, {counts[1]} conversations):")
    for label, part, key in devset.FIGURES:
        mine = devset.figure(ours["summary"], part, key)
        base = devset.figure(stock["summary"], part, key) if stock else None
        unit = "pt" if label.endswith("%") else "ms"
        diff = f"{mine - base:+.1f} {unit}" if mine is not None and base is not None else ""
        target, ok = "", None
        if key == "success_pct":
            target, ok = f">= {TARGETS['devset_success_pct']:.0f} %, +10 pt", section.get("ok")
        print(row(label, mine, "" if base is None else base, diff, target, ok))
    mine, base = ours["non_dutch"], (stock or {}).get("non_dutch")
    print(row("non-Dutch intent accuracy %", mine["accuracy_pct"], "" if base is None else base["accuracy_pct"],
              "" if base is None else f"{mine['accuracy_pct'] - base['accuracy_pct']:+.1f} pt",
              target=f"{mine['correct']}/{mine['n']} ({', '.join(sorted({i['language'] for i in mine['items']}))})"))


def machine_info() -> Dict:
    """Context needed to compare runs: cores, load, Python, git commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": sys.version.split()[0],
            "commit": commit, "started": datetime.now().isoformat(timespec="seconds")}


def run_candidates(result: Dict, configs: Dict[str, Path], tmp: Path, skip_devset: bool) -> None:
    """Full models of the candidate pipelines: training time, held-out scores, dev set."""
    for name in candidate_pipelines([{"name": "SentenceIntentClassifier"}, {"name": "CRFEntityExtractor"}]):
        print(f"[bench] candidate {name}: full training, held-out file, dev set ...", flush=True)
        training = train(configs[name], tmp, f"candidate-{name}", nlu_only=False)
        model = training.pop("model")
        entry = result["candidates"][name] = {"training": training, "nlu": evaluate_nlu(model, tmp, name)}
        if not skip_devset:
            workdir = tmp / f"devset-{name}"
            workdir.mkdir()
            entry["devset"] = devset.evaluate_model(model, workdir)


def print_candidates(result: Dict) -> None:
    """One line per pipeline: training time, held-out macro-F1, dev-set figures."""
    rows = {"ours": {"training": result.get("full_training"), "nlu": result["nlu"].get("ours"),
                     "devset": result.get("devset", {}).get("ours")}, **result["candidates"]}
    print("\n" + f"{'pipeline':<16}{'train s':>9}{'F1 held-out':>13}{'dev correct %':>15}"
          f"{'handoff rec %':>15}{'convs %':>9}{'p95 ms':>8}")
    for name, entry in rows.items():
        summary = (entry.get("devset") or {}).get("summary", {})
        figure = lambda part, key: devset.figure(summary, part, key) if summary else ""  # noqa: E731
        print(f"{name:<16}{(entry.get('training') or {}).get('seconds', ''):>9}"
              f"{(entry.get('nlu') or {}).get('intent_macro_f1', ''):>13}{figure('messages', 'success_pct'):>15}"
              f"{figure('messages', 'handoff_recall_pct'):>15}{figure('conversations', 'all_turns_ok_pct'):>9}"
              f"{figure('messages', 'latency_ms_p95'):>8}")


def run_stages(result: Dict, skip_stock: bool, messages: int, skip_devset: bool,
               candidates: bool = False) -> None:
    """Runs NLU comparison, full training, serving and the dev set; fills result as it goes."""
    with tempfile.TemporaryDirectory(prefix="appcare-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not skip_devset:  # fail before the long trainings when the dev set is missing
            result["devset"] = {"folder": str(devset.devset_dir())}
        configs, models = write_configs(tmp), {}
        result["pipeline_ours"] = YAML(typ="safe").load(configs["ours"].read_text(encoding="utf-8"))["pipeline"]
        pipelines = ("ours",) if skip_stock else ("ours", "stock")
        for name in pipelines:
            # The dev set needs a full stock model; its NLU part is evaluated too (no second training).
            kind = "full" if name == "stock" and not skip_devset else "nlu"
            print(f"[bench] training {kind} ({name}) and evaluating on {HOLDOUT.name} ...", flush=True)
            training = train(configs[name], tmp, f"{kind}-{name}", nlu_only=kind == "nlu")
            models[name] = training.pop("model")
            result["nlu"][name] = evaluate_nlu(models[name], tmp, name)
            result["nlu_training"][name] = {**training, "kind": kind}
        print("[bench] full training (ours) ...", flush=True)
        training = train(configs["ours"], tmp, "full", nlu_only=False)
        models["ours"] = training.pop("model")
        result["full_training"] = training
        print(f"[bench] serving: warm-up 10, {messages} sequential, concurrent ...", flush=True)
        result["serving"] = measure_serving(models["ours"], tmp, messages)
        if not skip_devset:
            run_devset(result["devset"], models, tmp)
        if candidates:
            run_candidates(result, configs, tmp, skip_devset)


def run_devset(section: Dict, models: Dict[str, str], tmp: Path) -> None:
    """Dev set and non-Dutch check against each full model; target: ours >= gate and >= +10 pt over stock."""
    for name, model in models.items():
        print(f"[bench] dev set ({name}) through the REST channel ...", flush=True)
        workdir = tmp / f"devset-{name}"
        workdir.mkdir()
        section[name] = devset.evaluate_model(model, workdir)
    success = {name: devset.figure(section[name]["summary"], "messages", "success_pct") for name in models}
    section["gain_points"] = round(success["ours"] - success["stock"], 1) if "stock" in success else None
    section["ok"] = success["ours"] >= TARGETS["devset_success_pct"] and (
        section["gain_points"] is None or section["gain_points"] >= TARGETS["devset_gain_points"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-stock", action="store_true", help="do not train/evaluate the stock pipeline")
    parser.add_argument("--messages", type=int, default=200, help="messages in the latency run")
    parser.add_argument("--skip-devset", action="store_true", help="do not run the dev set (../shared/eval)")
    parser.add_argument("--quick", action="store_true", help="--skip-stock and 50 messages")
    parser.add_argument("--candidates", action="store_true",
                        help="also compare DIET and Rasa's LogisticRegressionClassifier in our pipeline")
    args = parser.parse_args(argv)
    messages = 50 if args.quick else args.messages
    result: Dict = {"machine": machine_info(), "targets": TARGETS, "nlu": {}, "nlu_training": {}, "candidates": {}}
    status = 0
    try:
        run_stages(result, args.skip_stock or args.quick, messages, args.skip_devset, args.candidates)
    except (RuntimeError, OSError, requests.RequestException, subprocess.SubprocessError) as exc:
        result["error"], status = str(exc), 1
        print(f"[bench] FAILED: {exc}\n[bench] partial results are saved", file=sys.stderr)
    print_table(result)
    if result["candidates"]:
        print_candidates(result)
    result["machine"]["loadavg_end"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\n[bench] results: {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
