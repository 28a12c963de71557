"""Issue 16: the event stream to RabbitMQ carries no phone numbers, BSNs, profile
names or wamids, uses a keyed pseudonym as sender id, can use TLS, and
endpoints.prod.yml loads the pseudonymising broker.

Real RabbitMQ at 127.0.0.1:5672 (guest/guest); every test declares its own exchange
and queue and deletes them. Skipped when no broker is reachable.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROKER = "appcare.plugins.event_broker.PseudonymisingPikaEventBroker"
KEY_A = "event-broker-test-key-A-0123456789"
KEY_B = "event-broker-test-key-B-9876543210"

WA_ID = "31612345678"
NUMBER_ID = "1065403522"
PHONE_NOTATIONS = ("31612345678", "0612345678", "06-12345678", "+31 6 1234 5678", "12345678")
BSN = "111222333"
PROFILE = "Fatima Yilmaz"
USERNAME = "fatimay84"
WAMID = "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzRUIwMkE5QkI4RjNGMjY3OTMA"
FORBIDDEN = PHONE_NOTATIONS + (BSN, "Fatima", "Yilmaz", USERNAME, WAMID, "HBgLMzE2MTIzNDU2Nzg", "Dorpsstraat")


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _rabbitmq_up(), reason="RabbitMQ not reachable at 127.0.0.1:5672")


# ------------------------------------------------------------------ helpers
@pytest.fixture
def names():
    """A unique exchange and queue; deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    exchange, queue = f"appcare-test-events-{run}", f"appcare_test_events_{run}"
    yield exchange, queue

    async def _delete() -> None:
        import aio_pika

        connection = await aio_pika.connect(host="127.0.0.1", port=5672, login="guest", password="guest", timeout=5)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)

    asyncio.run(_delete())


def endpoint(exchange: str, queue: str, **extra: Any):
    from rasa.utils.endpoints import EndpointConfig

    return EndpointConfig(url="127.0.0.1", type=BROKER, port=5672, username="guest", password="guest",
                          exchange_name=exchange, queues=[queue], connection_attempts=1,
                          retry_delay_in_seconds=0, **extra)


async def consume(queue: str, expected: int, seconds: float = 15) -> List[Tuple[Dict[str, Any], Dict[str, Any], str]]:
    """(event, headers, raw body) of the messages in ``queue``, until ``expected`` arrived."""
    import aio_pika

    got: List[Tuple[Dict[str, Any], Dict[str, Any], str]] = []
    connection = await aio_pika.connect(host="127.0.0.1", port=5672, login="guest", password="guest", timeout=5)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        deadline = time.monotonic() + seconds
        while len(got) < expected and time.monotonic() < deadline:
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            raw = message.body.decode("utf-8")
            got.append((json.loads(raw), dict(message.headers or {}), raw))
    return got


def metadata() -> Dict[str, Any]:
    """What channels/whatsapp/service.py hands to Rasa with a message."""
    return {
        "channel": "whatsapp", "phone_number_id": NUMBER_ID, "wamid": WAMID, "profile_name": PROFILE,
        "username": USERNAME, "sent_at": "2026-03-02T09:00:00+00:00", "received_at": "2026-03-02T09:00:01+00:00",
        "delay_seconds": 1.0, "context_wamid": WAMID, "municipality": "terneuzen",
    }


def conversation() -> List[Any]:
    """A session as Rasa records it: start, the metadata slot, a citizen who leaves a
    number, BSN and name, the handoff action and the bot's confirmation."""
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered

    return [
        ActionExecuted("action_session_start"),
        SessionStarted(),
        SlotSet("session_started_metadata", metadata()),
        ActionExecuted("action_listen"),
        UserUttered(
            f"Mijn BSN is {BSN}, bel me terug op 06-12345678 of +31 6 1234 5678. Ik woon Dorpsstraat 12. "
            f"Groet, {PROFILE} ({WA_ID})",
            intent={"name": "request_callback", "confidence": 0.91},
            entities=[
                {"entity": "street", "value": "Dorpsstraat", "start": 70, "end": 81, "extractor": "CRFEntityExtractor"},
                {"entity": "document_type", "value": "paspoort", "start": 0, "end": 4, "extractor": "CRFEntityExtractor"},
            ],
            parse_data={
                "intent": {"name": "request_callback", "confidence": 0.91},
                "intent_ranking": [{"name": "request_callback", "confidence": 0.91},
                                   {"name": "request_human", "confidence": 0.05}],
                "entities": [
                    {"entity": "street", "value": "Dorpsstraat", "start": 70, "end": 81},
                    {"entity": "document_type", "value": "paspoort", "start": 0, "end": 4},
                ],
                "text": f"Mijn BSN is {BSN}, bel me terug op 06-12345678. Groet, {PROFILE}",
                "message_id": WAMID,
                "metadata": metadata(),
            },
            input_channel="whatsapp", message_id=WAMID, metadata=metadata(),
        ),
        SlotSet("street", "Dorpsstraat 12"),
        SlotSet("document_type", "paspoort"),
        SlotSet("failed_attempts", 0.0),
        ActionExecuted("action_handoff_to_kcc", policy="RulePolicy", confidence=1.0),
        BotUttered("Een medewerker belt je terug op 06-12345678.",
                   {"buttons": [{"title": "Bedankt", "payload": "/thanks"}]},
                   {"utter_action": "utter_handoff_callback"}),
        ActionExecuted("action_listen"),
    ]


async def _publish_conversation(config: Any, queue: str, sender_id: str, events: List[Any]):
    """Through Rasa's own path: the tracker store streams new events to the broker."""
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    broker = await EventBroker.create(config)
    try:
        store = InMemoryTrackerStore(Domain.empty(), event_broker=broker)
        await store.save(DialogueStateTracker.from_events(sender_id, events))
        got = await consume(queue, len(events))
    finally:
        await broker.close()
    return broker, got


def publish(monkeypatch: pytest.MonkeyPatch, key: str, config: Any, queue: str, sender_id: str = WA_ID,
            events: Optional[List[Any]] = None):
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", key)
    events = events if events is not None else conversation()
    broker, got = asyncio.run(_publish_conversation(config, queue, sender_id, events))
    assert len(got) == len(events), f"{len(got)} of {len(events)} events arrived"
    return broker, got


# -------------------------------------------------------------------- tests
def test_consumed_events_carry_no_phone_bsn_profile_name_or_wamid(monkeypatch, names) -> None:
    from appcare.pii import conversation_hash

    exchange, queue = names
    originals = conversation()
    broker, got = publish(monkeypatch, KEY_A, endpoint(exchange, queue), queue, events=originals)
    assert type(broker).__name__ == "PseudonymisingPikaEventBroker"
    everything = "\n".join(raw for _, _, raw in got)
    for value in FORBIDDEN:
        assert value not in everything, f"{value!r} reached RabbitMQ"
    assert not re.search(r"profile_name|username|wamid", everything)

    events = [event for event, _, _ in got]
    assert all(headers.get("appcare-pseudonymised") == "v1" for _, headers, _ in got)
    # the sender is the keyed pseudonym the subject-access tool prints for this number
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_A)
    assert {e["sender_id"] for e in events} == {conversation_hash(WA_ID)}

    # what the data warehouse counts is still there
    assert [e["event"] for e in events] == [e.as_dict()["event"] for e in originals]
    assert [e["timestamp"] for e in events] == [e.timestamp for e in originals]
    actions = [e["name"] for e in events if e["event"] == "action"]
    assert actions == ["action_session_start", "action_listen", "action_handoff_to_kcc", "action_listen"]
    user = next(e for e in events if e["event"] == "user")
    assert user["parse_data"]["intent"] == {"name": "request_callback", "confidence": 0.91}
    assert [i["name"] for i in user["parse_data"]["intent_ranking"]] == ["request_callback", "request_human"]
    assert user["metadata"]["municipality"] == "terneuzen" and user["metadata"]["channel"] == "whatsapp"
    assert user["metadata"]["delay_seconds"] == 1.0
    assert "[BSN]" in user["text"] and "[telefoon]" in user["text"] and "bel me terug" in user["text"]
    entities = {e["entity"]: e["value"] for e in user["parse_data"]["entities"]}
    assert entities == {"street": "[removed]", "document_type": "paspoort"}
    assert user["message_id"] and user["message_id"] == user["parse_data"]["message_id"]
    slots = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert slots == {"session_started_metadata": "[removed]", "street": "[removed]",
                     "document_type": "paspoort", "failed_attempts": 0.0}
    bot = next(e for e in events if e["event"] == "bot")
    assert bot["text"] == "Een medewerker belt je terug op [telefoon]."
    assert bot["metadata"] == {"utter_action": "utter_handoff_callback"}


def test_sender_pseudonym_depends_on_the_key_and_covers_other_numbers(monkeypatch, names) -> None:
    from rasa.shared.core.events import ActionExecuted, UserUttered

    exchange, queue = names

    def one_event() -> List[Any]:
        return [UserUttered("hoe laat open?", intent={"name": "opening_hours", "confidence": 0.8}),
                ActionExecuted("action_opening_hours")]

    _, under_a = publish(monkeypatch, KEY_A, endpoint(exchange, queue), queue, events=one_event())
    _, under_b = publish(monkeypatch, KEY_B, endpoint(exchange, queue), queue, events=one_event())
    _, other_line = publish(monkeypatch, KEY_A, endpoint(exchange, queue), queue,
                            sender_id=f"{WA_ID}@{NUMBER_ID}", events=one_event())
    a = {e["sender_id"] for e, _, _ in under_a}
    b = {e["sender_id"] for e, _, _ in under_b}
    assert len(a) == 1 and len(b) == 1 and a != b
    pseudonym_a = a.pop()
    assert WA_ID not in pseudonym_a and re.fullmatch(r"[0-9a-f]{12}", pseudonym_a)
    # the conversation with another municipality's number: same pseudonym, then @<number id>
    assert {e["sender_id"] for e, _, _ in other_line} == {f"{pseudonym_a}@{NUMBER_ID}"}
    assert [e["parse_data"]["intent"]["name"] for e, _, _ in under_b if e["event"] == "user"] == ["opening_hours"]


def _env_example() -> Dict[str, str]:
    values = {}
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


@pytest.mark.parametrize("older_env_file", [False, True], ids=["env.example", "env-without-new-variables"])
def test_prod_endpoints_load_the_pseudonymising_broker(monkeypatch, names, older_env_file) -> None:
    from rasa.utils.endpoints import read_endpoint_config

    from appcare.plugins.event_broker import PseudonymisingPikaEventBroker

    exchange, queue = names
    env = _env_example()
    assert env.get("RABBITMQ_SSL") == "false"
    env.update({"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_USERNAME": "guest", "RABBITMQ_PASSWORD": "guest",
                "RABBITMQ_QUEUE": queue, "RABBITMQ_EXCHANGE": exchange})
    if older_env_file:  # an installation's env file from before issue 16 keeps working
        env = {k: v for k, v in env.items() if not k.startswith("RABBITMQ_SSL")}
        monkeypatch.delenv("RABBITMQ_SSL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = read_endpoint_config(str(ROOT / "endpoints.prod.yml"), "event_broker")
    assert config.type == BROKER
    broker, got = publish(monkeypatch, KEY_A, config, queue)
    assert isinstance(broker, PseudonymisingPikaEventBroker) and broker.tls is False
    assert broker.exchange_name == exchange and list(broker.queues) == [queue]
    everything = "\n".join(raw for _, _, raw in got)
    for value in FORBIDDEN:
        assert value not in everything


def test_production_without_pseudonym_key_publishes_nothing(monkeypatch, names) -> None:
    from rasa.core.brokers.broker import EventBroker

    from appcare.secrets import SecretError

    exchange, queue = names
    monkeypatch.setenv("APPCARE_ENV", "production")
    monkeypatch.delenv("APPCARE_PSEUDONYM_KEY", raising=False)
    # Rasa stops at start-up (it wraps the error as "Cannot connect to event broker.")
    with pytest.raises(Exception) as raised:
        asyncio.run(EventBroker.create(endpoint(exchange, queue)))
    assert isinstance(raised.value, SecretError) or isinstance(raised.value.__cause__, SecretError)


# ---------------------------------------------------------------------- TLS
def _certificates(directory: Path) -> Tuple[Path, Path, Path, Path]:
    """(CA, server certificate, server key, another CA) for 127.0.0.1, made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def ca(common: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("appcare test CA")
    _, other_cert = ca("some other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca_cert.subject)
                   .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other-ca.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    paths[3].write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    return paths


class TlsFront:
    """A TLS listener in front of the plain RabbitMQ port (like a TLS-terminating
    broker): only TLS clients get through; counts completed handshakes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.handshakes = 0
        self.server: Optional[asyncio.base_events.Server] = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5672)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async def stop(self) -> None:
        if self.server:
            self.server.close()


def test_tls_connection_verifies_the_broker_and_never_falls_back(monkeypatch, names, tmp_path) -> None:
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.shared.exceptions import ConnectionException

    ca, cert, key, other_ca = _certificates(tmp_path)
    exchange, queue = names
    monkeypatch.setenv("APPCARE_PSEUDONYM_KEY", KEY_A)
    monkeypatch.setenv("RABBITMQ_SSL", "true")

    async def scenario() -> Dict[str, Any]:
        front = TlsFront(cert, key)
        await front.start()
        result: Dict[str, Any] = {}
        try:
            # trusted CA: connects over TLS and publishes
            monkeypatch.setenv("RABBITMQ_CA_FILE", str(ca))
            config = endpoint(exchange, queue)
            config.kwargs["port"] = front.port
            broker = await EventBroker.create(config)
            try:
                result["tls"] = broker.tls
                store = InMemoryTrackerStore(Domain.empty(), event_broker=broker)
                events = conversation()
                await store.save(DialogueStateTracker.from_events(WA_ID, events))
                result["got"] = await consume(queue, len(events))
                result["expected"] = len(events)
            finally:
                await broker.close()
            result["handshakes"] = front.handshakes
            # a certificate from a CA we do not trust: refused
            monkeypatch.setenv("RABBITMQ_CA_FILE", str(other_ca))
            try:
                await EventBroker.create(config)
                result["untrusted"] = "connected"
            except (ConnectionException, ssl.SSLError, ConnectionError) as exc:
                result["untrusted"] = type(exc).__name__
            # TLS on, but the broker only speaks plain AMQP: no silent fallback
            monkeypatch.setenv("RABBITMQ_CA_FILE", str(ca))
            try:
                await EventBroker.create(endpoint(exchange, queue))
                result["plain"] = "connected"
            except (ConnectionException, ssl.SSLError, ConnectionError) as exc:
                result["plain"] = type(exc).__name__
        finally:
            await front.stop()
        return result

    result = asyncio.run(scenario())
    assert result["tls"] is True
    assert result["handshakes"] >= 1
    assert len(result["got"]) == result["expected"]
    assert not any(value in raw for _, _, raw in result["got"] for value in FORBIDDEN)
    assert result["untrusted"] != "connected"
    assert result["plain"] != "connected"
