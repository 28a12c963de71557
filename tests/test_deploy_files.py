"""The deployment files: deploy/env.example lists every variable the other files
read, deploy/compose.yml, the systemd units and the Procfile describe the topology and
open no doors, and Rasa reads endpoints.prod.yml with those variables."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


ENDPOINT_VARS = sorted(set(re.findall(r"\$\{([A-Z0-9_]+)\}", (ROOT / "endpoints.prod.yml").read_text())))


def env_example() -> Dict[str, str]:
    values = {}
    for number, line in enumerate((ROOT / "deploy" / "env.example").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("# ") or line.strip() == "#" or line.startswith("# -"):
            continue
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        assert match, f"env.example:{number}: not KEY=value: {line!r}"
        assert " #" not in match.group(2), f"env.example:{number}: inline comment (systemd would keep it)"
        values[match.group(1)] = match.group(2)
    return values


def test_env_example_lists_every_variable() -> None:
    from channels.config import ENV_KEYS

    listed = env_example()
    compose = (ROOT / "deploy" / "compose.yml").read_text()
    needed = set(ENDPOINT_VARS) | set(ENV_KEYS.values()) | set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    needed |= {"APPCARE_LOG_FORMAT", "APPCARE_INSTANCE_ID", "TICKET_LOCK_LIFETIME", "RASA_URL",
               "WHATSAPP_LEASE_SECONDS", "WHATSAPP_BOT_RETRY_SECONDS", "RETENTION_DAYS", "APPCARE_ANON_KEY"}
    needed -= {"APPCARE_VERSION", "POSTGRES_USER", "POSTGRES_DB", "VAR"}
    missing = sorted(v for v in needed if v not in listed)
    assert not missing, f"deploy/env.example does not list {missing}"


def test_compose_file_describes_the_topology() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())
    services = compose["services"]
    for name in ("postgres", "redis", "rabbitmq", "actions-1", "actions-2", "rasa-1", "rasa-2", "haproxy", "desk",
                 "retention"):
        assert name in services, name
    for name in ("rasa-1", "rasa-2"):
        command = " ".join(services[name]["command"])
        assert "endpoints.prod.yml" in command and "--logging-config-file deploy/logging.yml" in command
        assert services[name]["environment"]["APPCARE_INSTANCE_ID"] == name
        assert "webhooks/whatsapp/health" in " ".join(services[name]["healthcheck"]["test"])
        assert set(services[name]["depends_on"]) >= {"postgres", "redis", "rabbitmq"}
    assert " ".join(services["haproxy"]["command"]) == "haproxy -W -db -f deploy/haproxy.cfg"
    assert services["haproxy"]["ports"] == ["127.0.0.1:8080:8080"]  # the webhook listener only
    listed = env_example()  # the addresses deploy/haproxy.cfg reads, as compose names the services
    assert listed["APPCARE_RASA_1"] == "rasa-1:5005" and listed["APPCARE_RASA_2"] == "rasa-2:5005"
    assert listed["APPCARE_ACTIONS_1"] == "actions-1:5055" and listed["APPCARE_ACTIONS_2"] == "actions-2:5055"
    assert listed["ACTION_ENDPOINT_URL"] == "http://haproxy:5056/webhook"
    assert services["desk"]["environment"]["RASA_URL"] == "http://haproxy:8081"  # HAProxy's internal listener
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert set(re.findall(r"\$\{(APPCARE_[A-Z0-9_]+)\}", config)) <= set(listed)
    assert "jobs.retention" in " ".join(services["retention"]["command"])
    for unit in ("appcare-rasa@.service", "appcare-actions@.service", "appcare-haproxy.service",
                 "appcare-desk.service", "appcare-retention.service", "appcare-retention.timer"):
        text = (ROOT / "deploy" / "systemd" / unit).read_text()
        assert "[Unit]" in text and ("[Service]" in text or "[Timer]" in text), unit
    procfile = (ROOT / "deploy" / "Procfile").read_text()
    for name in ("rasa1:", "rasa2:", "actions1:", "actions2:", "haproxy:", "desk:"):
        assert name in procfile


def test_production_start_commands_open_no_doors() -> None:
    """Production: WhatsApp-only credentials, Rasa's API with a JWT (no ?token=), the
    action server with its token check, only HAProxy's webhook listener public."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())["services"]
    units = {p.name: p.read_text() for p in (ROOT / "deploy" / "systemd").glob("*.service")}
    procfile = (ROOT / "deploy" / "Procfile").read_text()
    rasa_commands = [" ".join(compose[n]["command"]) for n in ("rasa-1", "rasa-2")]
    rasa_commands += [units["appcare-rasa@.service"]] + [l for l in procfile.splitlines() if l.startswith("rasa")]
    for command in rasa_commands:
        assert "credentials.prod.yml" in command and "--jwt-secret" in command and "--auth-token" not in command
    for command in rasa_commands[2:]:  # on one host: loopback only
        assert "--interface 127.0.0.1" in command
    action_commands = [" ".join(compose["actions-1"]["command"]), units["appcare-actions@.service"],
                       next(l for l in procfile.splitlines() if l.startswith("actions1:"))]
    for command in action_commands:
        assert "appcare.plugins.action_server" in command and "rasa run actions" not in command
    for command in [" ".join(compose["haproxy"]["command"]), units["appcare-haproxy.service"], procfile]:
        assert "deploy/haproxy.cfg" in command
    assert [p for p in compose["rasa-1"].get("ports", [])] == [] and compose["actions-1"].get("ports") is None
    prod_channels = yaml.safe_load((ROOT / "credentials.prod.yml").read_text())
    assert list(prod_channels) == ["channels.whatsapp.WhatsAppInput"]


def test_prod_endpoints_are_read_by_rasa(monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.core.utils import read_endpoints_from_path

    for key, value in env_example().items():
        monkeypatch.setenv(key, value)
    endpoints = read_endpoints_from_path(str(ROOT / "endpoints.prod.yml"))
    assert endpoints.tracker_store.type == "SQL" and endpoints.tracker_store.kwargs["dialect"] == "postgresql"
    assert endpoints.tracker_store.url == "postgres"
    assert endpoints.lock_store.type == "redis" and endpoints.lock_store.kwargs["key_prefix"] == "appcare"
    assert endpoints.event_broker.type == "appcare.plugins.event_broker.PseudonymisingPikaEventBroker" and endpoints.event_broker.kwargs["queues"] == ["appcare_events"]
    assert endpoints.action.url == "http://haproxy:5056/webhook"
    assert set(ENDPOINT_VARS) >= {"DB_HOST", "REDIS_HOST", "RABBITMQ_HOST", "ACTION_ENDPOINT_URL"}
