"""Throughput and latency phases of the load test (tools/loadtest.py), measured in one run
so that they can be compared as ratios on the same machine:

* ``rest_saturation``: one Rasa instance with the plain REST channel and the embedded
  settings of endpoints.yml (SQLite tracker store, in-memory lock store), the way
  `make run` and `make bench` serve; ``users`` citizens each send their next message as
  soon as the previous one is answered. Answered messages per second = its capacity.
* ``whatsapp_saturation``: the same closed loop through the production path: signed
  webhooks into HAProxy, two instances, PostgreSQL, Redis, RabbitMQ, the action servers
  behind HAProxy, replies to the (fake) Graph API. A message counts as answered when its
  first reply reaches the Graph API.
* ``fixed_rate``: an open loop at a fixed offered load (5 messages/s: a national peak)
  spread over many citizens; reports the reply latency (webhook POST to first reply).
"""
from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from appcare.ops import processes
from appcare.ports import free_port
from tests.support.cluster import BIN, Cluster, text_payload
from tools.loadtest import PHRASES, RunResult, Sent, deliver_like_meta

Progress = Callable[[str], None]


@dataclass
class Phase:
    name: str
    answered_per_s: float
    window_s: float
    latencies_ms: List[float] = field(default_factory=list)
    result: Optional[RunResult] = None
    cpu: str = ""


# ---------------------------------------------------------------- plain REST baseline
class RestInstance:
    """One ``rasa run`` with the REST channel and endpoints.yml's embedded stores; its
    actions go straight to one of the cluster's action servers."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.port = free_port()
        workdir = cluster.workdir
        self.credentials = workdir / "credentials.rest.yml"
        self.endpoints = workdir / "endpoints.rest.yml"
        self.credentials.write_text("channels.rest_input.RestInput:\n", encoding="utf-8")
        tracker = workdir / "rest-tracker.db"
        if tracker.exists():
            tracker.unlink()
        self.endpoints.write_text(
            "action_endpoint:\n"
            f"  url: \"{cluster.action_url('actions-1')}/webhook\"\n"
            "  headers:\n"
            "    Authorization: Bearer ${ACTION_SERVER_TOKEN}\n"
            "tracker_store:\n  type: SQL\n  dialect: sqlite\n"
            f"  db: {tracker}\n", encoding="utf-8")
        self.log = workdir / "rasa-rest.log"
        self.popen = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RestInstance":
        env = self.cluster.base_env("rasa-rest")
        env.pop("APPCARE_ENV", None)  # a newcomer's embedded set-up, not production
        self.popen = processes.start([
            str(BIN / "rasa"), "run", "--port", str(self.port), "--model", str(self.cluster.model),
            "--interface", "127.0.0.1", "--endpoints", str(self.endpoints), "--credentials", str(self.credentials),
        ], name="rasa-rest", log=self.log, append=True, env=env)
        return self

    def wait(self, seconds: float = 400.0) -> None:
        import requests

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                raise RuntimeError(f"REST instance exited:\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                answer = requests.post(self.url + "/webhooks/rest/webhook", timeout=30,
                                       json={"sender": "warmup", "message": "hallo"})
                if answer.status_code == 200 and answer.json():
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1.0)
        raise RuntimeError(f"REST instance did not answer in {seconds:.0f} s")

    def stop(self) -> None:
        if self.popen is not None:
            processes.stop([self.popen], timeout=30)  # its process group: SIGTERM, then SIGKILL


async def _closed_loop(send: Callable[[int, str], "asyncio.Future"], users: int, warmup_s: float, window_s: float,
                       seed: int) -> Tuple[int, List[float], int]:
    """``users`` loops of send-and-wait; counts the messages answered inside the window
    (and, last, all messages answered in the phase)."""
    rnd = random.Random(seed)
    start = time.monotonic()
    window_start, window_end = start + warmup_s, start + warmup_s + window_s
    answered: List[float] = []
    everything = [0]

    async def user(index: int) -> None:
        await asyncio.sleep(rnd.uniform(0, 1.0))
        while time.monotonic() < window_end:
            posted = time.monotonic()
            ok = await send(index, rnd.choice(PHRASES))
            done = time.monotonic()
            everything[0] += 1 if ok else 0
            if ok and window_start <= done <= window_end:
                answered.append((done - posted) * 1000)

    await asyncio.gather(*(user(i) for i in range(users)))
    return len(answered), answered, everything[0]


def rest_saturation(instance: RestInstance, users: int, warmup_s: float, window_s: float, seed: int = 3) -> Phase:
    import aiohttp

    run = uuid.uuid4().hex[:6]

    async def main() -> Tuple[int, List[float], int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users + 4)) as session:
            async def send(index: int, text: str) -> bool:
                try:
                    async with session.post(instance.url + "/webhooks/rest/webhook",
                                            json={"sender": f"rest-{run}-{index}", "message": text},
                                            timeout=aiohttp.ClientTimeout(total=60)) as answer:
                        return answer.status == 200 and bool(await answer.json())
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    return False

            return await _closed_loop(send, users, warmup_s, window_s, seed)

    meter = CpuMeter(instance.cluster, {"rasa (REST)": instance.popen.pid} if instance.popen else {}).start()
    count, latencies, total = asyncio.run(main())
    return Phase("plain REST, 1 instance", count / window_s, window_s, latencies, cpu=meter.stop(total))


# ------------------------------------------------------------------- production path
class WebhookSender:
    """Posts signed WhatsApp webhooks to HAProxy as Meta does (retrying a failed
    delivery with back-off) and records every message for the lost/doubled/reordered
    count of :func:`tools.loadtest.analyse`."""

    def __init__(self, cluster: Cluster, session: "object", result: RunResult, run: str) -> None:
        self.cluster, self.session, self.result, self.run = cluster, session, result, run
        self.url = cluster.public_url + "/webhooks/whatsapp/webhook"
        self.counter = 0

    async def post(self, wa_id: str, index: int, text: str) -> Sent:
        self.counter += 1
        wamid = f"wamid.TP{self.run}{self.counter:06d}{uuid.uuid4().hex[:6]}"
        self.cluster.graph.expect(wamid, wa_id)
        body = text_payload(wa_id, text, wamid)
        item = Sent(wa_id, index, wamid, text, posted=time.time())
        self.result.sent.append(item)
        item.status, _ack_ms = await deliver_like_meta(self.session, self.url, body, self.result)
        item.acked = time.time()
        self.result.ack_ms.append((item.acked - item.posted) * 1000)
        return item

    async def answered(self, item: Sent, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cluster.graph.answered(item.wamid):
                return True
            await asyncio.sleep(0.02)
        return False


def _wa_ids(count: int, seed: int) -> List[str]:
    rnd = random.Random(seed)
    base = 31700000000 + rnd.randrange(10_000_000, 90_000_000)
    return [str(base + i * 41) for i in range(count)]


async def _settle(cluster: Cluster, result: RunResult, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(cluster.graph.answered(s.wamid) for s in result.sent):
        await asyncio.sleep(0.25)
    await asyncio.sleep(2.0)  # paced reply parts and late doubles


def whatsapp_saturation(cluster: Cluster, users: int, warmup_s: float, window_s: float, seed: int = 5) -> Phase:
    import aiohttp

    result = RunResult(started=time.time())
    wa_ids = _wa_ids(users, seed)
    indexes = [0] * users

    async def main() -> Tuple[int, List[float], int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users + 20)) as session:
            sender = WebhookSender(cluster, session, result, uuid.uuid4().hex[:6].upper())

            async def send(index: int, text: str) -> bool:
                item = await sender.post(wa_ids[index], indexes[index], text)
                indexes[index] += 1
                return item.status == 200 and await sender.answered(item, 60.0)

            outcome = await _closed_loop(send, users, warmup_s, window_s, seed)
            result.finished_sending = time.time()
            await _settle(cluster, result, 120.0)
            return outcome

    meter = CpuMeter(cluster).start()
    count, latencies, total = asyncio.run(main())
    cpu = meter.stop(total)
    return Phase("WhatsApp via HAProxy, 2 instances", count / window_s, window_s, latencies, result, cpu)


def fixed_rate(cluster: Cluster, rate: float, seconds: float, citizens: int = 150, seed: int = 9) -> Phase:
    """``rate`` messages per second for ``seconds``, message k from citizen k % citizens."""
    import aiohttp

    result = RunResult(started=time.time())
    wa_ids = _wa_ids(citizens, seed + 1000)
    rnd = random.Random(seed)
    latencies: List[float] = []

    async def main() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            sender = WebhookSender(cluster, session, result, uuid.uuid4().hex[:6].upper())
            tasks = []

            async def one(k: int) -> None:
                item = await sender.post(wa_ids[k % citizens], k // citizens, rnd.choice(PHRASES))
                if item.status == 200 and await sender.answered(item, 120.0):
                    latencies.append((cluster.graph.first_reply[item.wamid] - item.posted) * 1000)

            start = time.monotonic()
            total = int(rate * seconds)
            for k in range(total):
                await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one(k)))
            await asyncio.gather(*tasks)
            result.finished_sending = time.time()
            await _settle(cluster, result, 60.0)

    asyncio.run(main())
    answered = len(latencies)
    return Phase(f"fixed load {rate:g} msgs/s for {seconds:.0f} s", answered / seconds, seconds, latencies, result)



# ------------------------------------------------------------------- where the CPU goes
def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pids_named(*names: str) -> List[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class CpuMeter:
    """CPU seconds used by each part of the set-up between :meth:`start` and
    :meth:`stop` (processes of this machine; PostgreSQL, Redis and RabbitMQ count
    all their processes, so run nothing else against them meanwhile)."""

    def __init__(self, cluster: Cluster, extra: Optional[Dict[str, int]] = None) -> None:
        self.cluster, self.extra = cluster, extra or {}
        self.before: Dict[str, float] = {}

    def _sample(self) -> Dict[str, float]:
        parts: Dict[str, float] = {}
        for name, proc in self.cluster.procs.items():
            if proc.popen is not None:
                cpu = _cpu_of(proc.popen.pid)
                parts[name.split("-")[0]] = parts.get(name.split("-")[0], 0.0) + cpu
                if name.startswith("rasa-"):
                    parts[name] = cpu  # each instance too: how evenly the load is spread
        for name, pid in self.extra.items():
            parts[name] = _cpu_of(pid)
        haproxy = self.cluster.haproxy
        if haproxy is not None and haproxy.popen is not None:
            parts["haproxy"] = sum(_cpu_of(p) for p in _pids_named("haproxy"))
        parts["postgresql"] = sum(_cpu_of(p) for p in _pids_named("postgres"))
        parts["redis"] = sum(_cpu_of(p) for p in _pids_named("redis-server"))
        parts["rabbitmq"] = sum(_cpu_of(p) for p in _pids_named("beam.smp"))
        parts["load generator + fake Graph API"] = sum(os.times()[:2])
        return parts

    def start(self) -> "CpuMeter":
        self.before = self._sample()
        return self

    def stop(self, answered: int) -> str:
        after = self._sample()
        used = {k: after[k] - self.before.get(k, 0.0) for k in after if after[k] - self.before.get(k, 0.0) > 0.05}
        instances = {k: used.pop(k) for k in sorted(used) if k.startswith("rasa-")}
        total = sum(used.values())
        per = ", ".join(f"{k} {v / max(1, answered) * 1000:.0f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1]))
        line = f"CPU ms per answered message: {per} (total {total / max(1, answered) * 1000:.0f})"
        if len(instances) > 1 and used.get("rasa", 0.0) >= 0.1 * total:  # not in the plain REST phase
            shares = ", ".join(f"{k} {100 * v / sum(instances.values()):.0f} %" for k, v in instances.items())
            line += f"; Rasa CPU per instance: {shares}"
        return line
