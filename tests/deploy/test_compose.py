"""Server mode by reading: docker-compose.yml, Dockerfile and deploy/ checked against the code that reads them.

No Docker engine runs here, so these tests are the guard: every SHEKARA_* variable the compose sets is a real
Settings field (and Settings built from that environment holds those values), host names and ports agree
between services, images are pinned, every service has a health check, a restart policy and waits for healthy
dependencies. The container health checks (deploy/healthcheck.py) run for real against the embedded broker
and chDB.
"""

from __future__ import annotations

import re
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel, SecretStr
from typer.testing import CliRunner

from shekara.embedded import EmbeddedBroker, free_port
from shekara.settings import FaustSettings, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROJECT_SERVICES = ("processors", "sink", "simulator")
# Run once and exit 0; the services after them wait with `service_completed_successfully`.
ONE_SHOT_SERVICES = ("kafka-init",)
# Which Kafka user (deploy/kafka_acls.py) each Shekara service logs in as.
KAFKA_USERS = {"processors": "processors", "sink": "sink", "simulator": "producer", "kafka-init": "admin"}
INFRA_IMAGES = {
    "kafka": "apache/kafka:",
    "schema-registry": "confluentinc/cp-schema-registry:",
    "clickhouse": "clickhouse/clickhouse-server:",
}
KAFKA_CLIENT_DEFAULTS = {"session_timeout": 45.0, "heartbeat_interval": 3.0, "max_poll_interval": 300.0}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation (${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}, $$)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        present = name in env and (env[name] != "" or op not in (":-", ":?"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg or ""
        if op in (":?", "?"):
            raise KeyError(f"required variable {name} is not set: {arg}")
        return ""

    return _VAR.sub(sub, value).replace("$$", "$")


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and "services" in doc
    return doc


@pytest.fixture(scope="module")
def host_env() -> dict[str, str]:
    """The variables an operator puts in .env: deploy/env.example lists them all."""
    return read_env_file(REPO / "deploy" / "env.example")


def container_env(compose: dict[str, Any], service: str, host_env: dict[str, str]) -> dict[str, str]:
    spec = compose["services"][service]
    env: dict[str, str] = {}
    for env_file in spec.get("env_file", []):
        env.update(read_env_file(REPO / env_file))
    environment = spec.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: interpolate(str(v), host_env) for k, v in environment.items()})
    return env


def settings_field(path: list[str]) -> bool:
    """Whether SHEKARA_A__B names a field (nested models walked with __), as pydantic-settings reads it."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(path) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def as_env_string(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No SHEKARA_* from the test runner's environment, no shekara.toml: only what the test sets."""
    import os

    for key in list(os.environ):
        if key.startswith("SHEKARA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SHEKARA_CONFIG", str(tmp_path / "absent.toml"))
    yield monkeypatch


# --- images, health checks, restart policies, dependencies -----------------------------------------------


def test_images_are_official_and_pinned_to_exact_versions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, prefix in INFRA_IMAGES.items():
        assert services[name]["image"].startswith(prefix), name
    for name, spec in services.items():
        image = spec.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        # Prometheus tags its releases with a "v" (prom/prometheus:v3.5.0).
        assert repo and re.fullmatch(r"v?\d+(\.\d+){2,}", tag), f"{name}: {image} is not pinned to an exact version"
    for name in PROJECT_SERVICES:
        assert services[name]["build"]["context"] == "."
        assert (REPO / services[name]["build"]["dockerfile"]).is_file()


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose: dict[str, Any]) -> None:
    for name in ONE_SHOT_SERVICES:
        assert compose["services"][name]["restart"] == "on-failure", name  # done is done; a failure is retried
    for name, spec in compose["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = spec.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert not check.get("disable"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name} health check has no {key}"
        policy = spec.get("restart", "no")
        assert policy in ("always", "unless-stopped") or policy.startswith("on-failure"), f"{name}: restart {policy}"


def test_dependencies_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions, not a list"
        for dep, condition in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if dep in ONE_SHOT_SERVICES:
                assert condition == {"condition": "service_completed_successfully"}, (name, dep)
                continue
            assert condition == {"condition": "service_healthy"} or condition.get("condition") == "service_healthy"
            assert "healthcheck" in services[dep]
    # Who waits for whom: the pipeline cannot start before the broker, its users and ACLs, and the registry,
    # the sink before ClickHouse; the registry needs its Kafka user too.
    for name in PROJECT_SERVICES:
        assert {"kafka", "kafka-init", "schema-registry"} <= set(services[name]["depends_on"]), name
    assert "kafka-init" in services["schema-registry"]["depends_on"]
    assert "clickhouse" in services["sink"]["depends_on"]
    assert "kafka" in services["schema-registry"]["depends_on"]


def test_simulator_is_an_optional_producer(compose: dict[str, Any]) -> None:
    simulator = compose["services"]["simulator"]
    assert simulator["profiles"] == ["simulator"]
    assert simulator["restart"] == "on-failure"  # a finished run must not start over
    assert "--to-kafka" in simulator["command"]
    # The webhook notifier runs only where a receiver is configured (sinks/notify.py).
    assert compose["services"]["notify"]["profiles"] == ["notify"]
    for name, spec in compose["services"].items():
        if name not in ("simulator", "notify"):
            assert "profiles" not in spec, f"{name} must start by default"


def test_processors_scale_and_keep_their_state_in_rocksdb(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    processors = compose["services"]["processors"]
    assert "container_name" not in processors  # a fixed name would forbid --scale
    assert processors["deploy"]["replicas"] >= 2
    env = container_env(compose, "processors", host_env)
    assert env["SHEKARA_FAUST__STORE"] == "rocksdb://"
    # One host port per partition: more replicas than partitions would only idle.
    (mapping,) = processors["ports"]
    first, last = map(int, re.search(r":(\d+)-(\d+):", mapping).groups())  # type: ignore[union-attr]
    assert last - first + 1 == int(env["SHEKARA_PARTITIONS"])
    assert mapping.endswith(":" + env["SHEKARA_FAUST__WEB_PORT"])
    assert processors["deploy"]["replicas"] <= int(env["SHEKARA_PARTITIONS"])


def test_server_mode_uses_kafka_timeouts_not_the_embedded_ones(
    compose: dict[str, Any], host_env: dict[str, str]
) -> None:
    tansu = FaustSettings()
    for service in ("processors", "sink"):
        env = container_env(compose, service, host_env)
        for field, kafka_default in KAFKA_CLIENT_DEFAULTS.items():
            value = float(env[f"SHEKARA_FAUST__{field.upper()}"])
            assert value == kafka_default, (service, field)
            assert value > getattr(tansu, field), (service, field)


# --- settings: names and values the code reads ------------------------------------------------------------


@pytest.mark.parametrize("service", (*PROJECT_SERVICES, "kafka-init"))
def test_every_shekara_variable_is_a_settings_field(
    compose: dict[str, Any], host_env: dict[str, str], service: str, clean_env: pytest.MonkeyPatch
) -> None:
    env = container_env(compose, service, host_env)
    shekara = {k: v for k, v in env.items() if k.startswith("SHEKARA_")}
    assert shekara, service
    unknown = [k for k in shekara if not settings_field(k.removeprefix("SHEKARA_").lower().split("__"))]
    assert not unknown, f"{service} sets variables Settings ignores: {unknown}"
    # And Settings built from exactly that environment holds exactly those values.
    for key, value in shekara.items():
        clean_env.setenv(key, value)
    settings = Settings()
    for key, value in shekara.items():
        obj: Any = settings
        for part in key.removeprefix("SHEKARA_").lower().split("__"):
            obj = getattr(obj, part)
        assert as_env_string(obj) == value, key
    assert settings.mode.value == "server"


def test_project_services_agree_on_topics_broker_registry_and_key(
    compose: dict[str, Any], host_env: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """A producer, the processors and the sink on different topics or keys would each look healthy alone."""
    seen = {}
    for service in PROJECT_SERVICES:
        env = container_env(compose, service, host_env)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                if key.startswith("SHEKARA_"):
                    mp.setenv(key, value)
            s = Settings()
        seen[service] = (
            s.topics.model_dump(),
            s.partitions,
            s.broker_url,
            s.schema_registry_url,
            s.pseudonym_key.get_secret_value(),
            s.rules_file,
        )
    assert len(set(map(repr, seen.values()))) == 1, seen
    assert seen["sink"][4] == host_env["SHEKARA_PSEUDONYM_KEY"]


def test_secrets_come_from_the_operator_not_from_the_repository(compose: dict[str, Any]) -> None:
    shared = read_env_file(REPO / "deploy" / "shekara.env")
    assert not {k for k in shared if "KEY" in k or "PASSWORD" in k}, "secrets belong in .env, not deploy/"
    with pytest.raises(KeyError, match="SHEKARA_PSEUDONYM_KEY"):
        container_env(compose, "processors", {})
    dev_key = Settings.model_fields["pseudonym_key"].default.get_secret_value()
    assert dev_key not in COMPOSE.read_text()


def test_host_names_and_ports_agree_between_services(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    sink_env = container_env(compose, "sink", host_env)

    broker = urlsplit(sink_env["SHEKARA_BROKER_URL"])
    assert broker.scheme == "kafka" and broker.hostname == "kafka" == services["kafka"]["hostname"]
    assert f"CLIENTS://{broker.hostname}:{broker.port}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"CLIENTS://:{broker.port}" in kafka["KAFKA_LISTENERS"].split(",")
    # KRaft single node: broker and controller, the quorum is this node on the controller listener.
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    controller_port = next(
        x.rsplit(":", 1)[1] for x in kafka["KAFKA_LISTENERS"].split(",") if x.startswith("CONTROLLER")
    )
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:{controller_port}"
    names = {x.split(":")[0] for x in kafka["KAFKA_LISTENERS"].split(",")}
    assert names == {x.split(":")[0] for x in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from `shekara topics`
    assert int(kafka["KAFKA_NUM_PARTITIONS"]) == int(sink_env["SHEKARA_PARTITIONS"])
    # Tools on the host reach the broker where the embedded default points: no settings needed there.
    default_port = urlsplit(Settings.model_fields["broker_url"].default).port
    assert f"127.0.0.1:{default_port}:{default_port}" in services["kafka"]["ports"]
    assert f"HOST://localhost:{default_port}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")

    registry = urlsplit(sink_env["SHEKARA_SCHEMA_REGISTRY_URL"])
    reg_env = services["schema-registry"]["environment"]
    assert registry.hostname == services["schema-registry"]["hostname"]
    assert reg_env["SCHEMA_REGISTRY_LISTENERS"].endswith(f":{registry.port}")
    assert reg_env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == f"SASL_PLAINTEXT://kafka:{broker.port}"

    warehouse = urlsplit(sink_env["SHEKARA_CLICKHOUSE_DSN"])
    assert warehouse.scheme == "http" and warehouse.hostname == services["clickhouse"]["hostname"]
    assert warehouse.port == 8123 and any(p.endswith(":8123") for p in services["clickhouse"]["ports"])
    assert warehouse.path.strip("/") == sink_env["SHEKARA_SINK__DATABASE"]
    assert warehouse.password == host_env["CLICKHOUSE_WRITER_PASSWORD"]
    assert sink_env["SHEKARA_SINK__ANALYST_PASSWORD"] == host_env["CLICKHOUSE_ANALYST_PASSWORD"]


def test_processors_health_check_and_web_port_agree(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    processors = compose["services"]["processors"]
    assert processors["healthcheck"]["test"][-2:] == ["/app/deploy/healthcheck.py", "processors"]
    env = container_env(compose, "processors", host_env)
    assert env["SHEKARA_FAUST__WEB_ENABLED"] == "true"  # the health check and the ops page need it


# --- Kafka: authenticated listeners, one user per service, ACLs --------------------------------------------


def kafka_acls() -> Any:
    """deploy/kafka_acls.py as a module (it is a script in the image, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kafka_acls", REPO / "deploy" / "kafka_acls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kafka_acls"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_kafka_listeners_authenticate_and_deny_by_default(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    kafka = container_env(compose, "kafka", host_env)
    protocols = dict(x.split(":") for x in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols and all(p in ("SASL_PLAINTEXT", "SASL_SSL") for p in protocols.values()), protocols
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
    assert protocols[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]].startswith("SASL_")
    # Every listener has its login module; the broker's own logins use the admin's password from .env.
    admin_password = host_env["KAFKA_ADMIN_PASSWORD"]
    for listener in protocols:
        mechanism = "PLAIN" if listener == kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] else "SCRAM___SHA___512"
        assert f"KAFKA_LISTENER_NAME_{listener}_{mechanism}_SASL_JAAS_CONFIG" in kafka, listener
    assert f'password="{admin_password}"' in kafka["KAFKA_LISTENER_NAME_CLIENTS_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == "User:admin"
    # The admin's SCRAM credential exists from the first start: the storage is formatted with it.
    assert compose["services"]["kafka"]["command"] == ["bash", "/opt/shekara/kafka-start.sh"]
    start = (REPO / "deploy" / "kafka-start.sh").read_text()
    assert "--add-scram" in start and "SCRAM-SHA-512=[name=admin" in start and "exec /etc/kafka/docker/run" in start
    assert "--command-config /tmp/admin.properties" in " ".join(compose["services"]["kafka"]["healthcheck"]["test"])
    assert kafka["ADMIN_PASSWORD"] == admin_password
    # The registry logs in as its own user.
    registry = container_env(compose, "schema-registry", host_env)
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_MECHANISM"] == "SCRAM-SHA-512"
    jaas = registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG"]
    assert 'username="schema-registry"' in jaas and f'password="{host_env["KAFKA_REGISTRY_PASSWORD"]}"' in jaas


def test_kafka_init_sets_users_topics_and_acls(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    acls = kafka_acls()
    init = compose["services"]["kafka-init"]
    assert init["command"] == ["python", "/app/deploy/kafka_acls.py"]
    assert "./deploy/kafka_acls.py:/app/deploy/kafka_acls.py:ro" in init["volumes"]
    env = container_env(compose, "kafka-init", host_env)
    assert (
        env["SHEKARA_KAFKA__USERNAME"] == "admin" and env["SHEKARA_KAFKA__PASSWORD"] == host_env["KAFKA_ADMIN_PASSWORD"]
    )
    assert set(acls.passwords(env)) == set(acls.USERS)  # every user's password is there
    with pytest.raises(ValueError, match="KAFKA_SINK_PASSWORD is not set"):
        acls.passwords({k: v for k, v in env.items() if k != "KAFKA_SINK_PASSWORD"})
    # Each Shekara service logs in as its own user, with that user's password.
    for service, user in KAFKA_USERS.items():
        service_env = container_env(compose, service, host_env)
        assert service_env["SHEKARA_KAFKA__USERNAME"] == user, service
        variable = "KAFKA_ADMIN_PASSWORD" if user == "admin" else acls.USERS[user]
        assert service_env["SHEKARA_KAFKA__PASSWORD"] == host_env[variable], service
        assert service_env["SHEKARA_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert service_env["SHEKARA_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    # Only kafka-init creates topics: the services start their process directly.
    for service in PROJECT_SERVICES:
        assert "topics" not in compose["services"][service]["command"], service
    registry = compose["services"]["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_TOPIC"] == acls.REGISTRY_TOPIC
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_GROUP_ID"] == acls.REGISTRY_GROUP


def test_acls_give_each_user_only_what_its_service_does() -> None:
    from streams.app import DEFAULT_APP_ID

    acls = kafka_acls()
    settings = Settings()
    t = settings.topics
    sources = {t.crossings, t.registrations, t.status_changes}
    grants = acls.grants(settings)
    assert acls.PROCESSORS_APP_ID == DEFAULT_APP_ID
    assert len(grants) == len(set(grants))

    def allowed(user: str) -> set[tuple[str, str, str, bool]]:
        return {(g.resource, g.name, g.operation, g.prefixed) for g in grants if g.user == user}

    # Producers write the source topics, and the dead-letter topic (`shekara publish` reports the lines it
    # refuses there), nothing else: no reading, no alerts, no groups.
    writable = [*sources, t.dead_letter]
    assert allowed("producer") == {("topic", n, op, False) for n in writable for op in ("WRITE", "DESCRIBE")}
    # Analysts have no Kafka user; every user has a password variable.
    assert {g.user for g in grants} == set(acls.USERS) and not any("analyst" in u for u in acls.USERS)
    processors = allowed("processors")
    assert {n for r, n, op, _ in processors if op == "READ" and r == "topic"} == sources | {
        t.address_registrations,
        t.identity_links,  # renewals' handoffs between the processors' partitions
        t.alerts,
        t.alert_actions,
        f"{DEFAULT_APP_ID}-",
    }
    assert {n for r, n, op, _ in processors if op == "WRITE"} == {
        t.alerts,
        t.alert_actions,
        t.stays,
        t.dead_letter,
        t.address_registrations,
        t.identity_links,
        f"{DEFAULT_APP_ID}-",
    }
    assert ("group", DEFAULT_APP_ID, "READ", False) in processors
    assert ("topic", f"{DEFAULT_APP_ID}-", "CREATE", True) in processors  # its changelogs, nothing else
    assert {n for r, n, op, _ in processors if op == "CREATE"} == {f"{DEFAULT_APP_ID}-"}
    sink = allowed("sink")
    assert {n for r, n, op, _ in sink if op == "READ" and r == "topic"} == sources | {
        t.alerts,
        t.stays,
        t.dead_letter,
        t.alert_actions,
    }
    assert {n for r, n, op, _ in sink if op == "WRITE"} == {t.dead_letter}
    assert {n for r, n, op, _ in sink if r == "group"} == {settings.sink.group_id, settings.notify.group_id}
    # Every grant converts to a valid confluent-kafka ACL binding.
    bindings = {acls.acl_binding(g) for g in grants}
    assert len(bindings) == len(grants)
    assert all(b.principal.startswith("User:") and b.host == "*" for b in bindings)


def test_every_credential_comes_from_env_and_is_required(compose: dict[str, Any], host_env: dict[str, str]) -> None:
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    referenced = {m["name"] for m in _VAR.finditer(text)}
    assert referenced == set(host_env), "compose and deploy/env.example must list the same variables"
    for m in _VAR.finditer(text):
        assert m["op"] == ":?", f"${{{m['name']}}} must use :? so compose refuses to start without it"
    secretish = re.compile(r"PASSWORD|_KEY$|JAAS_CONFIG|CLICKHOUSE_DSN")
    for name, spec in compose["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if secretish.search(key):
                value = str(value)
                if key.endswith("JAAS_CONFIG") and "password=" not in value:
                    continue  # a listener that only verifies logins holds no password
                assert _VAR.search(value), f"{name}: {key} is not taken from .env"
    for service in PROJECT_SERVICES:
        with pytest.raises(KeyError, match="KAFKA_"):
            container_env(compose, service, {k: v for k, v in host_env.items() if not k.startswith("KAFKA_")})


def test_host_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for mapping in spec.get("ports", []):
            assert isinstance(mapping, str) and mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping}"


def test_server_mode_accepts_real_secrets_and_refuses_the_example(
    compose: dict[str, Any], host_env: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    from shekara.settings import check_secrets

    real = {k: f"{k.lower().replace('_', '-')}-9d8c7b6a5f4e3d2c1b0a" for k in host_env}
    uses = {
        "processors": {"clickhouse": False},
        "sink": {"ops_page": False},
        "simulator": {"pseudonym": False, "clickhouse": False, "ops_page": False},
    }
    for service, needs in uses.items():
        for values, expect_ok in ((real, True), (host_env, False)):
            with pytest.MonkeyPatch.context() as mp:
                for key, value in container_env(compose, service, values).items():
                    if key.startswith("SHEKARA_"):
                        mp.setenv(key, value)
                problems = check_secrets(Settings(), **needs)
            assert (problems == []) is expect_ok, (service, problems)


# --- ClickHouse users ----------------------------------------------------------------------------------------


def clickhouse_users() -> ET.Element:
    return ET.parse(REPO / "deploy" / "clickhouse" / "users.d" / "shekara.xml").getroot()


def test_analyst_user_is_read_only_and_writer_owns_the_database(
    compose: dict[str, Any], host_env: dict[str, str]
) -> None:
    root = clickhouse_users()
    sink_env = container_env(compose, "sink", host_env)
    database = sink_env["SHEKARA_SINK__DATABASE"]
    analyst_name = sink_env["SHEKARA_CLICKHOUSE_ANALYST_USER"]
    assert analyst_name == Settings.model_fields["clickhouse_analyst_user"].default

    analyst = root.find(f"users/{analyst_name}")
    assert analyst is not None, "the analyst user the code connects as is not defined"
    profile = root.find(f"profiles/{analyst.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    grants = [q.text for q in analyst.findall("grants/query")]
    assert grants[0] == f"GRANT SELECT ON {database}.*"
    assert all(g and g.startswith("GRANT SELECT ON ") for g in grants)  # the rest: see the test below

    writer_name = urlsplit(sink_env["SHEKARA_CLICKHOUSE_DSN"]).username
    writer = root.find(f"users/{writer_name}")
    assert writer is not None, f"the sink's user {writer_name} is not defined"
    assert f"GRANT ALL ON {database}.*" in [q.text for q in writer.findall("grants/query")]

    # Passwords come from the ClickHouse container's environment, which compose fills from .env.
    ch_env = container_env(compose, "clickhouse", host_env)
    for user in (analyst, writer):
        password = user.find("password")
        assert password is not None and not (password.text or "").strip()
        assert password.get("from_env") in ch_env
    assert ch_env["CLICKHOUSE_ANALYST_PASSWORD"] == sink_env["SHEKARA_SINK__ANALYST_PASSWORD"]
    assert ch_env["CLICKHOUSE_WRITER_PASSWORD"] == urlsplit(sink_env["SHEKARA_CLICKHOUSE_DSN"]).password


def test_analyst_profile_and_grants_give_the_embedded_guarantees(
    compose: dict[str, Any], host_env: dict[str, str]
) -> None:
    """Server mode's analyst: the embedded session's limits, no introspection, SELECT on the warehouse and the
    guard's catalogue tables only (no KILL QUERY, no system.processes or query_log), system tables behind grants."""
    from shekara.settings import SinkSettings
    from sinks.clickhouse import analyst_limits
    from sinks.guard import INFORMATION_SCHEMA_TABLES, SYSTEM_TABLES

    root = clickhouse_users()
    database = container_env(compose, "sink", host_env)["SHEKARA_SINK__DATABASE"]
    analyst = root.find(f"users/{Settings.model_fields['clickhouse_analyst_user'].default}")
    assert analyst is not None
    profile = root.find(f"profiles/{analyst.findtext('profile')}")
    assert profile is not None
    wanted = {name: str(value) for name, value in analyst_limits(Settings(sink=SinkSettings())).items()}
    assert {child.tag: (child.text or "").strip() for child in profile} == {**wanted, "readonly": "1"}

    grants = {q.text for q in analyst.findall("grants/query")}
    allowed = {f"GRANT SELECT ON {database}.*"}
    allowed |= {f"GRANT SELECT ON system.{t}" for t in SYSTEM_TABLES}
    allowed |= {f"GRANT SELECT ON information_schema.{t}" for t in INFORMATION_SCHEMA_TABLES}
    assert grants == allowed
    assert not any("KILL" in (g or "") or "*.*" in (g or "") for g in grants)

    config = ET.parse(REPO / "deploy" / "clickhouse" / "config.d" / "shekara.xml").getroot()
    improvements = config.find("access_control_improvements")
    assert improvements is not None
    assert improvements.findtext("select_from_system_db_requires_grant") == "true"
    assert improvements.findtext("select_from_information_schema_requires_grant") == "true"


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in compose.get("volumes", {}), f"{name} uses undeclared volume {source}"
        for env_file in spec.get("env_file", []):
            assert (REPO / env_file).is_file()


# --- the image ------------------------------------------------------------------------------------------------


def test_dockerfile_builds_the_server_extra_from_python_311_slim(compose: dict[str, Any]) -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim(-\w+)?$", text, re.M)
    assert re.search(r'pip install "\.\[server\]"', text)
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)
    # The settings the image bakes in point inside it.
    rules = re.search(r"SHEKARA_RULES_FILE=(\S+)", text)
    assert rules and rules.group(1) == "/app/rules/kz.toml" and (REPO / "rules" / "kz.toml").is_file()
    assert "COPY rules/ rules/" in text and "WORKDIR /app" in text
    assert "COPY deploy/healthcheck.py deploy/healthcheck.py" in text


def test_commands_the_compose_runs_exist() -> None:
    from harness.cli import app

    runner = CliRunner()
    for command, options in (
        ("topics", []),
        ("process", []),
        ("sink", []),
        ("simulate", ["--days", "--scale", "--to-kafka", "--speed"]),
    ):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, f"shekara {command}: {result.output}"
        for option in options:
            assert option in result.output, f"shekara {command} has no {option}"


# --- the health checks, run for real ------------------------------------------------------------------------


def run_check(role: str) -> tuple[int, str]:
    """Run the check as the container does: its own process, settings from the environment only."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "healthcheck.py"), role],
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    return done.returncode, done.stderr


@pytest.mark.integration
def test_simulator_health_check_sees_the_broker(broker: EmbeddedBroker, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SHEKARA_BROKER_URL", broker.url)
    assert run_check("simulator")[0] == 0
    clean_env.setenv("SHEKARA_BROKER_URL", f"kafka://127.0.0.1:{free_port()}")
    code, err = run_check("simulator")
    assert code == 1 and "unhealthy:" in err


@pytest.mark.integration
def test_sink_health_check_needs_clickhouse_and_a_live_group_member(
    broker: EmbeddedBroker, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import Consumer

    from shekara.admin import ensure_topics, wait_for_broker

    group = f"shekara-sink-{uuid.uuid4().hex[:8]}"
    clean_env.setenv("SHEKARA_BROKER_URL", broker.url)
    clean_env.setenv("SHEKARA_CLICKHOUSE_DSN", f"chdb://{tmp_path / 'clickhouse'}")
    clean_env.setenv("SHEKARA_SINK__GROUP_ID", group)
    settings = Settings()
    wait_for_broker(settings)
    ensure_topics(settings)
    code, err = run_check("sink")
    assert code == 1 and f"consumer group {group} has no live member" in err  # nobody in the group yet
    f = settings.faust
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "session.timeout.ms": int(f.session_timeout * 1000),
            "heartbeat.interval.ms": int(f.heartbeat_interval * 1000),
            "max.poll.interval.ms": int(f.max_poll_interval * 1000),
        }
    )
    try:
        consumer.subscribe([settings.topics.crossings])
        for _ in range(100):
            consumer.poll(0.2)
            if consumer.assignment():
                break
        assert consumer.assignment()
        code, err = run_check("sink")
        assert code == 0, err
        clean_env.setenv("SHEKARA_CLICKHOUSE_DSN", f"http://127.0.0.1:{free_port()}")  # warehouse down
        code, err = run_check("sink")
        assert code == 1 and "unhealthy:" in err and "consumer group" not in err
    finally:
        consumer.close()


def test_processors_health_check_fails_when_nothing_serves_the_page(clean_env: pytest.MonkeyPatch) -> None:
    # The passing case runs against the real ops page in tests/streams/test_web.py.
    clean_env.setenv("SHEKARA_FAUST__WEB_PORT", str(free_port()))
    code, err = run_check("processors")
    assert code == 1 and "Connection refused" in err
    code, err = run_check("nonsense")
    assert code == 2 and "usage" in err
