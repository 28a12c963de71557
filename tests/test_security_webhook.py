"""Poison webhooks (issue 16): whatever a correctly signed body contains, the
channel answers 200 when it is JSON and 400 when it is not - never a 5xx, which
would make Meta redeliver the same body for days. Unsigned or wrongly signed
bodies are refused (401) and never processed or answered. 5xx stays for a real
outage of our own database.

The fuzz test posts 10,000 signed, malformed bodies (mutations of the real
webhook shapes in tests/fixtures/whatsapp: dropped keys, wrong types, huge
strings, odd unicode, deep nesting, huge numbers, random bytes) to the real
channel route (Rasa's ``register`` on a real Sanic server, a fake Graph API over
real HTTP, SQLite). Targeted tests pin each cause found and check that the valid
messages in the same batch are still answered exactly once.

Replay of the same signed webhook (one answer) is proven by
tests/test_whatsapp_channel.py::test_duplicate_delivery_is_answered_once and
tests/test_whatsapp_exactly_once.py; the signature checks by
test_signature_valid_invalid_missing; oversize bodies (streamed, 413) by
test_malformed_payloads_never_cause_500 - this module adds what they do not cover.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_graph_api import FakeGraphAPI
from tests.support.waiting import wait_for_state
from tests.test_whatsapp_channel import (
    APP_SECRET,
    FIXTURE_TS,
    FIXTURE_WA_ID,
    FIXTURES,
    PNID,
    ChannelServer,
    EchoBot,
    make_config,
    text_payload,
    wamid_of,
)

pytestmark = pytest.mark.timeout(600)

MAX_BODY = 3 * 1024 * 1024  # the channel's max_body_bytes (default)
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))  # fewer only to try a change quickly
_counter = itertools.count(1)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def graph() -> Any:
    with FakeGraphAPI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(graph: FakeGraphAPI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # SQLite in memory-backed /dev/shm when there is one: the fuzz is then about a fifth faster
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path_factory.getbasetemp()) as folder:
        srv = ChannelServer(make_config(graph, Path(folder) / "appcare.db"), EchoBot()).start()
        yield srv
        srv.stop()


class Poster:
    """Signed (or deliberately unsigned) POSTs over one keep-alive connection."""

    def __init__(self, server: ChannelServer) -> None:
        self.url = server.base + "/webhook"
        self.session = requests.Session()

    def post(self, body: bytes, signature: Optional[str] = "sign") -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.session.post(self.url, data=body, headers=headers, timeout=30)


# ------------------------------------------------------------------ generators
BASES: Dict[str, str] = {p.stem: p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.json"))}
# keys whose values the channel reads: mutations hit them more often than the rest
FOCUS = {
    "object", "entry", "changes", "field", "value", "metadata", "phone_number_id", "contacts", "wa_id",
    "user_id", "profile", "name", "username", "messages", "statuses", "errors", "from", "from_user_id",
    "id", "timestamp", "type", "text", "body", "interactive", "button_reply", "list_reply", "title",
    "button", "payload", "reaction", "message_id", "emoji", "image", "caption", "audio", "voice",
    "system", "new_wa_id", "context", "status", "recipient_id", "recipient_user_id", "code",
    "biz_opaque_callback_data", "pricing", "category", "billable", "pricing_model",
}
ODD_TEXT = [
    "\ud800", "\udfff", "a\ud83d", "\x00", "wamid.\x00x", "\u202e\u202d", "\ufeff", "e\u0301" * 50, "\U0001d518\U0001d52b",
    "\U0001F44D\U0001F3FD", "\u2764\ufe0f", "\u2028\u2029", "\uffff", "\U0010FFFF", "\u0660\u0661\u0662", "\u00b2",
    "appcare:\u00b2", "appcare:\u0661\u0662", "appcare:99999999999999999999", "1e999", " ", "", "/", "//restart",
    "31612345678@106540352242922", "NL.\u00c9", "../../etc/passwd", "' OR 1=1 --", "%s%n", "\r\n\t",
]
RAW_NUMBERS = ["9" * 30, "9" * 400, "9" * 5000, "-9" + "9" * 30, "1e999", "-1e999", "1e308", "-0", "1.5e-400", "2147483648"]


class Raw(str):
    """JSON text put into the body verbatim (what json.dumps cannot produce)."""


def _deep(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


wrong_types = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.just([]), st.just({}), st.just(""), st.just(0),
)
huge_strings = st.builds(
    lambda n, ch: ch * n,
    st.sampled_from([33, 41, 65, 129, 192, 257, 1025, 4097, 70_000, 300_000]),
    st.sampled_from(["x", "9", "\u00e9", "\U0001F600", "\x00", "\ud800"]),
)
odd_unicode = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=40), st.text(st.characters(codec="utf-8"), max_size=40))
deep_nesting = st.builds(_deep, st.sampled_from([30, 200, 1000, 5000, 100_000]), st.sampled_from(["list", "dict"]))
raw_numbers = st.sampled_from(RAW_NUMBERS).map(Raw)
replacement = st.one_of(wrong_types, huge_strings, odd_unicode, deep_nesting, raw_numbers)


def _paths(node: Any, prefix: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    out: List[Tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append(prefix + (key,))
        out.extend(_paths(child, prefix + (key,)))
    return out


def _parent(tree: Any, path: Tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _mutate(data: Any, tree: Dict[str, Any]) -> Any:
    paths = _paths(tree)
    if not paths:
        return data.draw(replacement)
    focused = [p for p in paths if isinstance(p[-1], str) and p[-1] in FOCUS]
    path = data.draw(st.sampled_from(focused if focused and data.draw(st.booleans()) else paths))
    parent, key = _parent(tree, path), path[-1]
    operation = data.draw(st.sampled_from(["drop", "replace", "replace", "add", "rename", "duplicate", "wrap"]))
    if operation == "add":  # a key the channel reads, where the real shape does not have it
        target = parent if isinstance(parent, dict) else tree
        target[data.draw(st.sampled_from(sorted(FOCUS)))] = data.draw(replacement)
    elif operation == "drop":
        del parent[key]
    elif operation == "replace":
        parent[key] = data.draw(replacement)
    elif operation == "rename" and isinstance(parent, dict):
        parent[data.draw(odd_unicode)] = parent.pop(key)
    elif operation == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:  # the value where an object or a list is expected, or the other way round
        parent[key] = data.draw(st.sampled_from([[parent[key]], {"value": parent[key]}, str(parent[key])[:50]]))
    return tree


def _dump(tree: Any, ensure_ascii: bool) -> bytes:
    raws: List[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(str(node))
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    text = json.dumps(swap(tree), ensure_ascii=ensure_ascii)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    # lone surrogates (ensure_ascii=False) become bytes that are not UTF-8: not JSON
    return text.encode("utf-8", "surrogatepass")


def is_json(body: bytes) -> bool:
    """The oracle: UTF-8 text that is JSON (however deep, however long its numbers)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        json.loads(text, parse_int=lambda s: 0, parse_float=lambda s: 0.0)
    except RecursionError:
        return True  # Python's parser gives up; the text itself is JSON
    except ValueError:
        return False
    return True


def base_tree(data: Any) -> Dict[str, Any]:
    n = next(_counter)
    raw = BASES[data.draw(st.sampled_from(sorted(BASES)))]
    raw = raw.replace(FIXTURE_WA_ID, f"3170{n:07d}").replace(FIXTURE_TS, str(int(time.time())))
    return json.loads(raw.replace("wamid.HBgL", f"wamid.FUZZ{n:07d}."))


# ------------------------------------------------------------------ fuzz test
def test_10000_signed_malformed_webhooks_never_get_a_5xx(server: ChannelServer, graph: FakeGraphAPI) -> None:
    fuzz_channel(server, graph, FUZZ_EXAMPLES)


def test_1000_signed_malformed_webhooks_on_postgresql(graph: FakeGraphAPI) -> None:
    """The same fuzz, fewer cases, on PostgreSQL (which enforces column lengths)."""
    server = ChannelServer(make_config(graph, Path("unused.db"), db_url=postgresql_url()), EchoBot()).start()
    try:
        fuzz_channel(server, graph, max(1, FUZZ_EXAMPLES // 10))
    finally:
        server.stop()


UNSIGNED = [  # how a body can come without Meta's signature
    lambda body: None,
    lambda body: sign(body, "not-the-secret"),
    lambda body: sign(body + b" "),
    lambda body: "sha1=" + sign(body)[7:],
    lambda body: "sha256=",
    lambda body: "sha256=" + "0" * 64,
    lambda body: sign(body)[:-1],
    lambda body: "sha256 " + sign(body)[7:],
    lambda body: sign(body).replace("sha256=", "SHA256="),
]


def fuzz_channel(server: ChannelServer, graph: FakeGraphAPI, examples: int) -> None:
    """Posts ``examples`` generated bodies (and unsigned ones besides) and checks each
    answer: signed JSON 200, signed non-JSON 400, over-size 413, unsigned 401 and
    not stored; never a 5xx."""
    poster = Poster(server)
    unsigned_senders: List[str] = []
    tally: Dict[Tuple[str, int], int] = {}
    schedule, rotation = itertools.count(1), itertools.count()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data: Any) -> None:
        # about one body in ten unsigned or wrongly signed; the others signed, mostly mutated real webhooks
        slot = data.draw(st.integers(0, 99))
        kind = "unsigned" if slot < 10 else "bytes" if slot < 17 else "broken" if slot < 24 else "shape" if slot < 30 else "mutated"
        if kind == "unsigned":
            n = next(_counter)
            sender = f"3199{n:07d}"
            payload = text_payload(sender, ["niet ondertekend"])
            body = encode(payload)
            answer = poster.post(body, data.draw(st.sampled_from(UNSIGNED))(body))
            tally[kind, answer.status_code] = tally.get((kind, answer.status_code), 0) + 1
            assert answer.status_code in (401, 403), answer.status_code
            # a message is persisted before the webhook is answered: none now means never
            assert server.store.inbound_status(wamid_of(payload)) is None
            unsigned_senders.append(sender)
            return
        if kind == "mutated":
            tree: Any = base_tree(data)
            for _ in range(data.draw(st.integers(1, 4))):
                tree = _mutate(data, tree) if isinstance(tree, (dict, list)) else data.draw(replacement)
            body = _dump(tree, ensure_ascii=data.draw(st.booleans()))
        elif kind == "bytes":
            body = data.draw(st.binary(max_size=300))
        elif kind == "broken":
            whole = _dump(base_tree(data), ensure_ascii=True)
            cut = data.draw(st.integers(0, len(whole) - 1))
            body = data.draw(st.sampled_from([whole[:cut], whole + b"}", b"\xef\xbb\xbf" + whole, whole[:cut] + b"\xff" + whole[cut:]]))
        else:  # JSON, but not the shape of a webhook
            body = _dump(data.draw(st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                max_leaves=12,
            )), ensure_ascii=True)
        if next(schedule) % 10 == 0:
            # Every tenth generated body first comes unsigned or wrongly signed (a fixed
            # rotation, not a draw): refused, and none of its messages stored.
            variant = UNSIGNED[next(rotation) % len(UNSIGNED)]
            refused = poster.post(body, variant(body))
            tally["unsigned " + kind, refused.status_code] = tally.get(("unsigned " + kind, refused.status_code), 0) + 1
            assert refused.status_code in ((413,) if len(body) > MAX_BODY else (401, 403)), refused.status_code
            for wamid in set(re.findall(rb"wamid\.FUZZ[0-9]{7}\.[A-Za-z0-9+/=]+", body)):
                assert server.store.inbound_status(wamid.decode()) is None
        answer = poster.post(body)
        tally[kind, answer.status_code] = tally.get((kind, answer.status_code), 0) + 1
        assert answer.status_code < 500, (answer.status_code, answer.text)
        expected = 413 if len(body) > MAX_BODY else 200 if is_json(body) else 400
        assert answer.status_code == expected, (answer.status_code, answer.text, body[:300])

    started = time.monotonic()
    fuzz()
    elapsed = time.monotonic() - started
    print(f"\n{examples} webhooks in {elapsed:.0f}s: {sorted(tally.items())}")
    assert sum(tally.values()) >= examples
    assert requests.get(server.base + "/health", timeout=10).status_code == 200
    # nothing was ever sent to a sender whose only webhook was unsigned
    unsigned = set(unsigned_senders)
    assert unsigned and not [r for r in graph.messages() if (r["json"] or {}).get("to") in unsigned]


# ------------------------------------------------------------- targeted tests
def now() -> str:
    return str(int(time.time()))


def message(sender: str, **fields: Any) -> Dict[str, Any]:
    body = {"from": sender, "id": f"wamid.POISON{next(_counter):07d}", "timestamp": now(), "type": "text",
            "text": {"body": "hallo"}}
    body.update(fields)
    return body


def status(**fields: Any) -> Dict[str, Any]:
    body = {"id": f"wamid.STATUS{next(_counter):07d}", "status": "delivered", "timestamp": now(),
            "recipient_id": "31600000000"}
    body.update(fields)
    return body


# Each cause found (payload shape, no personal data): the poison item, and for a
# poison message what its sender gets - the text the bot sees, or None (unusable sender).
POISON: Dict[str, Tuple[str, Dict[str, Any], Optional[str]]] = {
    "type_40_characters": ("message", {"type": "t" * 40}, "/non_text_message"),
    "type_odd_unicode": ("message", {"type": "\u202eimage\ud800\x00" + "\u00e9" * 50}, "/non_text_message"),
    "wamid_300_characters": ("message", {"id": "wamid." + "A" * 300}, "hallo"),
    "text_body_object": ("message", {"text": {"body": {"a": [1]}}}, "/non_text_message"),
    "text_not_an_object": ("message", {"text": "hallo"}, "/non_text_message"),
    "button_reply_without_id": ("message", {"type": "interactive", "interactive": {"type": "button_reply",
                                                                                    "button_reply": {"id": None}}},
                                "/non_text_message"),
    "text_lone_surrogate": ("message", {"text": {"body": "kapot \ud800 teken"}}, "kapot \ufffd teken"),
    "text_nul_character": ("message", {"text": {"body": "nul\x00teken"}}, "nulteken"),
    "timestamp_infinite": ("message", {"timestamp": Raw("1e999")}, "hallo"),
    "timestamp_year_10^22": ("message", {"timestamp": 10**30}, "hallo"),
    "timestamp_5000_digits": ("message", {"timestamp": Raw("9" * 5000)}, "hallo"),
    "from_with_tenant_separator": ("message", {"from": "31600000001@999"}, None),
    "from_300_characters": ("message", {"from": "3" * 300}, None),
    "status_error_code_2^40": ("status", {"status": "failed", "errors": [{"code": 2**40, "title": "x"}]}, None),
    "status_callback_superscript_digit": ("status", {"biz_opaque_callback_data": "appcare:\u00b2"}, None),
    "status_wamid_500_characters": ("status", {"id": "wamid." + "S" * 500}, None),
    "status_timestamp_infinite": ("status", {"timestamp": Raw("-1e999")}, None),
}


def poison_batch(valid_sender: str, poison_sender: str, case: str) -> Tuple[bytes, Dict[str, Any]]:
    """One POST: a valid text message, then the poison item (both in one change value)."""
    payload = text_payload(valid_sender, ["geldig bericht"])
    value = payload["entry"][0]["changes"][0]["value"]
    kind, fields, _ = POISON[case]
    if kind == "message":
        value["messages"].append(message(poison_sender, **fields))
    else:
        value["statuses"] = [status(**fields)]
    return _dump(payload, ensure_ascii=True), payload


def column_overflows(store: Any) -> List[str]:
    """Stored values longer than their column (SQLite keeps them; PostgreSQL refuses)."""
    from sqlalchemy import String, func, select

    from channels import inbox as tables

    found = []
    with store.engine.connect() as conn:
        for table in (tables.inbox, tables.outbox, tables.status_events, tables.identities, tables.contacts):
            for column in table.columns:
                if isinstance(column.type, String) and column.type.length:
                    longest = conn.execute(select(func.max(func.length(column)))).scalar() or 0
                    if longest > column.type.length:
                        found.append(f"{table.name}.{column.name}")
    return found


def check_poison_case(server: ChannelServer, graph: FakeGraphAPI, case: str) -> None:
    n = next(_counter)
    valid, poison = f"3171{n:07d}", f"3172{n:07d}"
    body, payload = poison_batch(valid, poison, case)
    poster = Poster(server)
    first = poster.post(body)
    assert first.status_code == 200, (case, first.status_code, first.text)
    assert first.json().get("status") == "ok", first.json()
    replay = poster.post(body)  # Meta redelivers: the same body, the same signature
    assert replay.status_code == 200 and replay.json()["new"] == 0, replay.json()
    expected = POISON[case][2]
    wamid = wamid_of(payload)
    server.wait_handled(valid, [wamid])
    server.wait_handled(poison)
    # the valid message of the same batch: processed and answered exactly once
    assert server.bot.texts(valid) == ["geldig bericht"]
    assert len(graph.delivered(valid)) == 1
    if expected is None:
        assert server.bot.texts(poison) == [] and graph.messages(poison) == []
    else:  # a usable sender and id: the citizen gets an answer, once
        assert server.bot.texts(poison) == [expected]
        assert len(graph.delivered(poison)) == 1
    assert column_overflows(server.store) == []


@pytest.mark.parametrize("case", sorted(POISON))
def test_poison_item_is_acknowledged_and_the_rest_of_the_batch_answered_once(
    server: ChannelServer, graph: FakeGraphAPI, case: str
) -> None:
    check_poison_case(server, graph, case)


def test_poison_messages_on_postgresql(graph: FakeGraphAPI) -> None:
    """PostgreSQL enforces VARCHAR lengths, INTEGER range and refuses NUL characters
    in text (SQLite does none of it): every poison case on the real database."""
    pg = postgresql_url()
    server = ChannelServer(make_config(graph, Path("unused.db"), db_url=pg), EchoBot()).start()
    try:
        for case in sorted(POISON):
            check_poison_case(server, graph, case)
    finally:
        server.stop()


def test_whole_body_shapes_are_acknowledged(server: ChannelServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="channels.whatsapp")
    poster = Poster(server)
    for body in (
        b'{"object": "whatsapp_business_account", "entry": {"changes": []}}',  # entry not a list
        b'{"object": "whatsapp_business_account", "entry": "x"}',
        b'{"object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nesting too deep for Python's parser
        b'{"object": "whatsapp_business_account", "entry": [' + b"9" * 6000 + b"]}",  # integer over 4,300 digits
        b'{"object": "\\ud800", "entry": []}',
        b"[]", b"null", b"1e999", b'"whatsapp_business_account"',
    ):
        answer = poster.post(body)
        assert answer.status_code == 200, (answer.status_code, body[:60])
    for body in (b"", b"{", b"\xff\xfe{}", b"not json", b'{"a": 1}}'):
        assert poster.post(body).status_code == 400, body
    assert "webhook ignored: JSON nested too deeply" in caplog.text
    assert "\\ud800" not in caplog.text and "\ud800" not in caplog.text  # no content in the log


def test_oversize_body_413_says_whether_meta_signed_it(server: ChannelServer, caplog: pytest.LogCaptureFixture) -> None:
    """Meta retries a 413 like any non-200: a signed over-size body means our limit is
    too low for real traffic, and the log says so loudly (unsigned ones stay a warning)."""
    caplog.set_level(logging.WARNING, logger="channels.whatsapp")
    poster = Poster(server)
    huge = encode({"object": "whatsapp_business_account", "entry": [], "pad": "x" * (MAX_BODY + 10)})
    assert poster.post(huge, signature=None).status_code == 413
    assert poster.post(huge, signature=sign(huge, "not-the-secret")).status_code == 413
    assert "SIGNED webhook body" not in caplog.text
    assert poster.post(huge).status_code == 413
    signed = [r for r in caplog.records if "SIGNED webhook body" in r.getMessage()]
    assert len(signed) == 1 and signed[0].levelno == logging.ERROR
    assert f"of {len(huge)} bytes" in signed[0].getMessage()
    assert requests.get(server.base + "/health", timeout=5).status_code == 200


def test_unsigned_poison_is_refused_and_never_processed(server: ChannelServer, graph: FakeGraphAPI) -> None:
    poster = Poster(server)
    n = next(_counter)
    valid, poison = f"3173{n:07d}", f"3174{n:07d}"
    body, payload = poison_batch(valid, poison, "type_40_characters")
    for signature in (None, sign(body, "not-the-secret"), "sha256=" + "0" * 64, sign(body + b" ")):
        assert poster.post(body, signature).status_code == 401
    assert server.store.inbound_status(wamid_of(payload)) is None  # persisted before any answer: never
    assert server.bot.texts(valid) == [] and graph.messages(valid) == []


# ------------------------------------------------------------------ outage: 503
def postgresql_url() -> str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    from appcare import db
    from tests.support.cluster import ensure_database

    name = "appcare_ptest_poison"
    db.dispose_all()
    ensure_database(name)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def test_database_outage_is_still_503_and_meta_retry_is_answered_once(graph: FakeGraphAPI) -> None:
    """The one 5xx left: our own database is down while the channel runs. Meta's
    redelivery after the outage is answered, once."""
    from tests.support.tcp_proxy import TcpProxy

    pg = postgresql_url()
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = ChannelServer(make_config(graph, Path("unused.db"), db_url=pg.replace(":5432/", f":{proxy.port}/")),
                           EchoBot()).start()
    try:
        poster = Poster(server)
        sender = f"3175{next(_counter):07d}"
        assert poster.post(encode(text_payload(sender, ["ervoor"]))).status_code == 200
        server.wait_handled(sender)
        proxy.cut()
        payload = text_payload(sender, ["tijdens de storing"])
        assert poster.post(encode(payload)).status_code == 503
        proxy.restore()
        assert poster.post(encode(payload)).status_code == 200  # Meta's retry
        server.wait_handled(sender, [wamid_of(payload)])
        assert server.bot.texts(sender) == ["ervoor", "tijdens de storing"]
        assert len(graph.delivered(sender)) == 2
    finally:
        server.stop()
        proxy.stop()
