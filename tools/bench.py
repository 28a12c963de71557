"""Benchmark for `make bench`: NLU quality (ours vs. stock), training time and memory,
reply latency and throughput through the REST channel with the action server.

Prints a table and writes bench/results/bench-<timestamp>.json. Options:
``--skip-stock`` (no stock pipeline), ``--messages N`` (latency run size, default 200),
``--quick`` (= --skip-stock --messages 50). Configs are never changed by the options.
See docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOLDOUT = ROOT / "tests" / "nlu_holdout.yml"
RESULTS_DIR = ROOT / "bench" / "results"
GB = 1024 ** 3
TARGETS = {"macro_f1": 0.92, "gain_points": 10.0, "p50_ms": 60.0, "p95_ms": 150.0,
           "train_s": 300.0, "memory_gb": 1.5}
STOCK_PIPELINE = [
    {"name": "WhitespaceTokenizer"}, {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"}, {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
    {"name": "EntitySynonymMapper"},
    {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]


def child_env(tmp: Path, cache_name: str) -> Dict[str, str]:
    """Environment of child processes: quiet TF, no telemetry, private caches and DBs."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", RASA_TELEMETRY_ENABLED="false",
               SQLALCHEMY_SILENCE_UBER_WARNING="1")
    env["RASA_CACHE_DIRECTORY"] = str(tmp / f"cache-{cache_name}")  # cold training, no shared cache
    env["APPCARE_DB_URL"] = f"sqlite:///{tmp / 'appcare-bench.db'}"  # tickets stay out of var/
    return env


def log_tail(path: Path, lines: int = 25) -> str:
    """Last lines of a log file, for error messages."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def run_measured(cmd: List[str], log: Path, env: Dict[str, str]) -> Dict[str, float]:
    """Runs a command to completion; returns wall and CPU seconds and peak RSS (ru_maxrss)."""
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: do not leave a training process behind
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{log_tail(log)}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_gb": round(usage.ru_maxrss * 1024 / GB, 3)}


def write_configs(tmp: Path) -> Dict[str, Path]:
    """Writes our effective config and the stock `rasa init` config (same policies)."""
    ours = tmp / "config.ours.yml"
    subprocess.run([sys.executable, "-m", "appcare.nlp_pipeline", "config", "--out", str(ours)],
                   cwd=ROOT, check=True, capture_output=True)
    yaml = YAML()
    policies = yaml.load((ROOT / "config.yml").read_text(encoding="utf-8"))["policies"]
    stock = tmp / "config.stock.yml"
    with stock.open("w", encoding="utf-8") as handle:
        yaml.dump({"language": "nl", "pipeline": STOCK_PIPELINE, "policies": policies}, handle)
    return {"ours": ours, "stock": stock}


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
    entity_report = out / "DIETClassifier_report.json"
    if entity_report.exists():
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


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Waits until url answers 200 with a non-empty body; fails if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log_tail(log)}")
        try:
            reply = requests.get(url, timeout=2)
            if reply.ok and reply.text.strip() and '"model_file":null' not in reply.text.replace(" ", ""):
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{log_tail(log)}")


def stop_servers(processes: List[subprocess.Popen]) -> None:
    """SIGTERM to each server's process group, SIGKILL after 20 s."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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


def percentile(values: List[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))], 1)


def pick(texts: List[str], count: int, offset: int = 0) -> List[str]:
    """count texts cycling through the hold-out examples."""
    return [texts[(offset + i) % len(texts)] for i in range(count)]


def start_servers(model: str, tmp: Path, processes: Dict[str, subprocess.Popen]) -> str:
    """Starts action server and Rasa server (REST only, SQLite tracker); returns the REST URL."""
    action_port, rasa_port = free_port(), free_port()
    endpoints, credentials = tmp / "endpoints.yml", tmp / "credentials.yml"
    endpoints.write_text(f"action_endpoint:\n  url: http://127.0.0.1:{action_port}/webhook\n"
                         f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp / 'tracker.db'}\n")
    credentials.write_text("rest:\n")
    rasa = str(BIN / "rasa")
    servers = {
        "actions": ([rasa, "run", "actions", "--port", str(action_port), "--actions", "actions"],
                    f"http://127.0.0.1:{action_port}/health"),
        "rasa": ([rasa, "run", "--enable-api", "--port", str(rasa_port), "--model", model,
                  "--endpoints", str(endpoints), "--credentials", str(credentials)],
                 f"http://127.0.0.1:{rasa_port}/status"),
    }
    for name, (cmd, ready_url) in servers.items():
        log = tmp / f"server-{name}.log"
        with log.open("w") as out:
            processes[name] = subprocess.Popen(cmd, cwd=ROOT, env=child_env(tmp, "serve"),
                                               start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(ready_url, processes[name], log)
    return f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook"


def measure_serving(model: str, tmp: Path, messages: int) -> Dict:
    """Starts the servers, measures latency, throughput and memory, always stops them."""
    processes: Dict[str, subprocess.Popen] = {}
    try:
        url, texts = start_servers(model, tmp, processes), holdout_texts()
        send_messages(url, pick(texts, 10), "bench-warmup")
        started = time.perf_counter()
        sequential = send_messages(url, pick(texts, messages, 10), "bench-seq")
        sequential_s = time.perf_counter() - started
        concurrent = measure_concurrent(url, texts, threads=4, per_thread=max(messages // 4, 10))
        memory = {name: tree_rss_gb(proc.pid) for name, proc in processes.items()}
    finally:
        stop_servers(list(processes.values()))
    latencies, empty = sequential["latencies"], sequential["empty"]
    return {"messages": messages, "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99), "sequential_msg_per_s": round(messages / sequential_s, 1),
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
    """Prints the readable summary table."""
    ours, stock = result["nlu"]["ours"], result["nlu"].get("stock")
    print("\n" + row("metric", "ours", "stock", "diff", "target") + "\n" + "-" * 86)
    for key in ("intent_accuracy", "intent_macro_f1", "entity_micro_f1", "entity_macro_f1"):
        mine, base = ours[key], (stock or {}).get(key)
        diff = f"{(mine - base) * 100:+.1f} pt" if mine is not None and base is not None else ""
        target, ok = "", None
        if key == "intent_macro_f1":
            target, ok = ">= 0.92, +10 pt", mine >= TARGETS["macro_f1"] and (
                base is None or (mine - base) * 100 >= TARGETS["gain_points"])
        print(row(key.replace("_", " "), mine, "" if base is None else base, diff, target, ok))
    for name, label in (("ours", "NLU train s / peak GB"), ("stock", "stock NLU train s / GB")):
        if name in result["nlu_training"]:
            t = result["nlu_training"][name]
            print(row(label, f"{t['seconds']} / {t['peak_gb']}", target=f"CPU {t['cpu_seconds']} s"))
    full, serve = result["full_training"], result["serving"]
    print(row("full train (s)", full["seconds"], target="<= 300 s", ok=full["seconds"] <= TARGETS["train_s"]))
    print(row("full train CPU (s) / peak GB", f"{full['cpu_seconds']} / {full['peak_gb']}"))
    print(row("latency p50 (ms)", serve["p50_ms"], target="<= 60 ms", ok=serve["p50_ms"] <= TARGETS["p50_ms"]))
    print(row("latency p95 (ms)", serve["p95_ms"], target="<= 150 ms", ok=serve["p95_ms"] <= TARGETS["p95_ms"]))
    print(row("latency p99 (ms)", serve["p99_ms"]))
    print(row("msg/s sequential", serve["sequential_msg_per_s"],
              target=f"{serve['messages']} msgs, {serve['empty_replies']} empty"))
    print(row("msg/s concurrent", serve["concurrent_msg_per_s"], target=serve["concurrent"]))
    print(row("RSS rasa + actions (GB)", serve["rss_total_gb"], target="<= 1.5 GB",
              ok=serve["rss_total_gb"] <= TARGETS["memory_gb"]))


def machine_info() -> Dict:
    """Context needed to compare runs: cores, load, Python, git commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": sys.version.split()[0],
            "commit": commit, "started": datetime.now().isoformat(timespec="seconds")}


def run_stages(result: Dict, skip_stock: bool, messages: int) -> None:
    """Runs NLU comparison, full training and serving; fills result as it goes."""
    with tempfile.TemporaryDirectory(prefix="appcare-bench-") as tmp_name:
        tmp = Path(tmp_name)
        configs = write_configs(tmp)
        result["pipeline_ours"] = YAML(typ="safe").load(configs["ours"].read_text(encoding="utf-8"))["pipeline"]
        for name in ("ours",) if skip_stock else ("ours", "stock"):
            print(f"[bench] training NLU ({name}) and evaluating on {HOLDOUT.name} ...", flush=True)
            training = train(configs[name], tmp, f"nlu-{name}", nlu_only=True)
            result["nlu"][name] = evaluate_nlu(training.pop("model"), tmp, name)
            result["nlu_training"][name] = training
        print("[bench] full training (ours) ...", flush=True)
        training = train(configs["ours"], tmp, "full", nlu_only=False)
        result["full_training"] = {key: value for key, value in training.items() if key != "model"}
        print(f"[bench] serving: warm-up 10, {messages} sequential, concurrent ...", flush=True)
        result["serving"] = measure_serving(training["model"], tmp, messages)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-stock", action="store_true", help="do not train/evaluate the stock pipeline")
    parser.add_argument("--messages", type=int, default=200, help="messages in the latency run")
    parser.add_argument("--quick", action="store_true", help="--skip-stock and 50 messages")
    args = parser.parse_args(argv)
    messages = 50 if args.quick else args.messages
    result: Dict = {"machine": machine_info(), "targets": TARGETS, "nlu": {}, "nlu_training": {}}
    status = 0
    try:
        run_stages(result, args.skip_stock or args.quick, messages)
        print_table(result)
    except (RuntimeError, OSError, requests.RequestException, subprocess.CalledProcessError) as exc:
        result["error"], status = str(exc), 1
        print(f"[bench] FAILED: {exc}\n[bench] partial results are saved", file=sys.stderr)
    result["machine"]["loadavg_end"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\n[bench] results: {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
