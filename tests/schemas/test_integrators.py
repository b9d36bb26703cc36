"""docs/integrators.md is true: its field reference is the schemas', its code blocks run against the real
embedded broker, its worked key and partition are what the code computes, its single-object frame is accepted
by the processors and the sink, and its REST Proxy service, ACLs and curl body agree with compose and the schema.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import stat
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastavro
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from producers.publish import publish_file
from schemas import reference
from schemas.ids import source_event_id
from schemas.records import Crossing
from schemas.serde import Serde, latest_version, registry_client
from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker
from shekara.pseudonym import partition_key
from shekara.settings import Settings, TopicNames
from sinks.framing import Framer
from streams.intake import Accepted, Intake

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "integrators.md"
COMPOSE = REPO / "docker-compose.yml"
_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
WORKED_KEY = "2b71e4341a18010dfeb0f0d2453aa59e"  # the doc's worked example: UZB, "fa 123-4567"


def blocks(lang: str) -> list[str]:
    return [m["body"] for m in _FENCE.finditer(DOC.read_text()) if m["lang"] == lang]


def python_block(marker: str) -> str:
    (code,) = [b for b in blocks("python") if marker in b]
    return code


def kafka_acls() -> Any:
    from tests.deploy.test_compose import kafka_acls as load

    return load()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


@pytest.fixture
def settings8(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Fresh topics with the 8 partitions of server mode, where the doc's worked partition is 6."""
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()}
    s = Settings(broker_url=broker.url, data_dir=tmp_path / "var", partitions=8, topics=TopicNames(**names))
    wait_for_broker(s)
    ensure_topics(s)
    return s


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 30.0) -> list[Message]:
    consumer = Consumer({**settings.kafka_config(), "group.id": f"t-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    found: list[Message] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            m = consumer.poll(0.3)
            if m is not None and m.error() is None:
                found.append(m)
    finally:
        consumer.close()
    return found


def env_for(settings: Settings) -> Iterator[tuple[str, str]]:
    """SHEKARA_* variables that make a bare `Settings()` (as the doc writes it) point at `settings`."""
    yield "SHEKARA_BROKER_URL", settings.broker_url
    yield "SHEKARA_DATA_DIR", str(settings.data_dir)
    yield "SHEKARA_PARTITIONS", str(settings.partitions)
    for name, topic in settings.topics.model_dump().items():
        yield f"SHEKARA_TOPICS__{name.upper()}", topic


# --- the field reference ----------------------------------------------------------------------------------------


def test_field_reference_agrees_with_the_schemas(tmp_path: Path) -> None:
    assert reference.main(["--check", str(DOC)]) == 0
    # The check is a real one: a doc whose table lost a field, or whose doc text went stale, fails it.
    stale = tmp_path / "integrators.md"
    stale.write_text(DOC.read_text().replace("| `traveller.sex` |", "| `traveller.gender` |", 1))
    assert reference.main(["--check", str(stale)]) == 1
    assert reference.main([str(stale)]) == 0 and stale.read_text() == DOC.read_text()  # regenerated


def test_reference_rows_cover_every_field_with_its_doc() -> None:
    for name, _topic in reference.SOURCE_RECORDS:
        raw = latest_version(name).raw
        rows = {r.path: r for r in reference.field_rows(raw)}
        assert {f["name"] for f in raw["fields"]} <= set(rows)
        assert all(r.doc for r in rows.values()), name
        for path, row in rows.items():
            assert f"| `{path}` |" in DOC.read_text(), (name, path)
            assert row.type and "{" not in row.type, (name, path, row.type)
    crossing = {r.path: r for r in reference.field_rows(latest_version("Crossing").raw)}
    assert crossing["checkpoint.id"].required and not crossing["checkpoint.border_country"].required
    # Inside an optional record every field is optional for the sender: leave the record out.
    assert not crossing["conveyance"].required and not crossing["conveyance.kind"].required
    assert crossing["direction"].type == "enum: ENTRY, EXIT"
    assert crossing["event_time"].type.startswith("timestamp: µs")


def test_schema_example_checkpoint_ids_are_real_ones() -> None:
    ids = {line.split(",", 1)[0] for line in (REPO / "rules" / "checkpoints.csv").read_text().splitlines()[1:]}
    named = set()
    for path in (REPO / "schemas" / "avro").glob("*.avsc"):
        named |= set(re.findall(r"\bKZ-[A-Z]{2,3}(?:-[A-Z]+)+\b", path.read_text()))
    named |= set(re.findall(r"\bKZ-[A-Z]{2,3}(?:-[A-Z]+)+\b", DOC.read_text()))
    assert named and named <= ids, named - ids


# --- JSON lines and Python examples run ------------------------------------------------------------------------


def test_json_lines_in_the_doc_are_the_example_files() -> None:
    (block,) = blocks("jsonl")
    examples = {line for p in (REPO / "docs" / "examples").glob("*.jsonl") for line in p.read_text().splitlines()}
    lines = block.splitlines()
    assert len(lines) == 3 and set(lines) <= examples
    assert {json.loads(line)["record_type"] for line in lines} == {"Crossing", "Registration", "StatusChange"}


@pytest.mark.integration
def test_json_lines_block_publishes(settings: Settings, tmp_path: Path) -> None:
    (block,) = blocks("jsonl")
    path = tmp_path / "events.jsonl"
    path.write_text(block)
    report = publish_file(path, settings)
    assert [str(r) for r in report.rejected] == []
    assert report.sent == report.read == 3


@pytest.mark.integration
def test_python_example_sends_a_keyed_crossing_where_the_doc_says(
    settings8: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("SHEKARA_")]:
        monkeypatch.delenv(name)
    for name, value in env_for(settings8):
        monkeypatch.setenv(name, value)
    exec(python_block("EventProducer(settings)"), {})  # its own assert: the outcome was "sent"

    (m,) = read_topic(settings8, settings8.topics.crossings, 1)
    assert m.key() == WORKED_KEY.encode() == partition_key("UZB", "FA1234567").encode()
    # librdkafka's consistent_random: CRC-32 of the key modulo the partitions, as the doc tells other clients.
    assert m.partition() == zlib.crc32(WORKED_KEY.encode()) % 8 == 6
    crossing = Serde().decode(m.value() or b"", settings8.topics.crossings)
    assert isinstance(crossing, Crossing)
    assert crossing.event_id == source_event_id("zhibek-zholy", "ZZ-2026-000001")
    assert crossing.traveller.document.number == "FA1234567"


def test_partition_key_recipe_is_the_projects() -> None:
    namespace: dict[str, Any] = {}
    exec(python_block("zlib.crc32"), namespace)  # asserts the worked key and partition itself
    recipe = namespace["partition_key"]
    for country, number in [("uzb", "fa 123-4567"), ("RUS", "75 1234/567.8"), ("kgz", "id\t0012345"), ("CHN", "E1")]:
        assert recipe(country, number) == partition_key(country, number), (country, number)
    text = DOC.read_text()
    assert f"`{WORKED_KEY}`" in text and f"CRC-32 = {zlib.crc32(WORKED_KEY.encode())}" in text
    shell = re.search(r"In a shell: `(?P<cmd>[^`]+)`", text)
    assert shell is not None
    out = subprocess.run(["bash", "-c", shell["cmd"]], capture_output=True, text=True, check=True).stdout
    assert out.strip() == WORKED_KEY


# --- single-object encoding ------------------------------------------------------------------------------------


def crc64_avro(data: bytes) -> int:
    """The Avro specification's reference fingerprint (Rabin, EMPTY = 0xc15d213aa4d7a795), written out."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.integration
def test_single_object_block_is_accepted_by_the_processors_and_the_sink(
    settings8: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the block reads schemas/avro/crossing.v2.avsc as an integrator's checkout would
    exec(python_block(r'b"\xc3\x01"'), {"settings": settings8})

    (m,) = read_topic(settings8, settings8.topics.crossings, 1)
    value, key = m.value() or b"", m.key()
    stated = re.search(r"a Crossing v2 message starts `(?P<hex>[0-9a-f ]+)`", DOC.read_text())
    assert stated is not None and value[:10] == bytes.fromhex(stated["hex"])
    # The doc's byte order, from the specification's algorithm rather than the library under test.
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(latest_version("Crossing").parsed)
    assert value[2:10] == crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert m.partition() == 6  # the same partition the Python client chose for this traveller

    admitted = Intake(settings8, Serde()).admit(m.topic() or "", key, value, now=datetime.now(UTC))
    assert isinstance(admitted, Accepted), admitted
    assert admitted.event.event_id == source_event_id("zhibek-zholy", "ZZ-2026-000001")
    assert isinstance(admitted.event, Crossing) and admitted.event.checkpoint.border_country == "UZB"
    writer, header = Framer(settings8)(value)  # the sink's reader of the frame
    assert (writer.record_name, header) == ("Crossing", 10)
    assert Framer(settings8).explain(value) is None


# --- registry --------------------------------------------------------------------------------------------------


def test_registry_section_names_the_subjects_and_level_the_code_uses(compose: dict[str, Any]) -> None:
    text = DOC.read_text()
    for topic in (TopicNames().crossings, TopicNames().registrations, TopicNames().status_changes):
        assert f"`{topic}-value`" in text
    serde_source = (REPO / "schemas" / "serde.py").read_text()
    assert (
        '"subject.name.strategy.type": "TOPIC"' in serde_source and "ConfigCompatibilityLevel.BACKWARD" in serde_source
    )
    registry = compose["services"]["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL"] == "backward" and "BACKWARD" in text
    from schemas.compat import BACKWARD_ONLY

    assert all(name.split(".")[0] + "." + name.split(".")[1] in text for name in BACKWARD_ONLY)


# --- REST Proxy ------------------------------------------------------------------------------------------------


def test_rest_proxy_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    rest = services["rest-proxy"]
    registry_image = services["schema-registry"]["image"]
    assert rest["image"] == "confluentinc/cp-kafka-rest:" + registry_image.rsplit(":", 1)[1]  # one CP release
    assert rest["ports"] == ["127.0.0.1:8082:8082"]
    env = rest["environment"]
    assert urlsplit(env["KAFKA_REST_LISTENERS"]).port == 8082
    kafka_env = services["kafka"]["environment"]
    clients = next(x for x in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",") if x.startswith("CLIENTS://"))
    assert env["KAFKA_REST_BOOTSTRAP_SERVERS"] == "SASL_PLAINTEXT://" + clients.removeprefix("CLIENTS://")
    assert env["KAFKA_REST_CLIENT_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["KAFKA_REST_CLIENT_SASL_MECHANISM"] == "SCRAM-SHA-512" == kafka_env["KAFKA_SASL_ENABLED_MECHANISMS"]
    acls = kafka_acls()
    jaas = env["KAFKA_REST_CLIENT_SASL_JAAS_CONFIG"]
    assert 'username="rest-proxy"' in jaas and f"${{{acls.USERS['rest-proxy']}:?" in jaas
    init_env = services["kafka-init"]["environment"]
    assert acls.USERS["rest-proxy"] in init_env  # kafka-init sets the user's SCRAM credential
    registry = urlsplit(env["KAFKA_REST_SCHEMA_REGISTRY_URL"])
    assert registry.hostname == services["schema-registry"]["hostname"]
    assert services["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"].endswith(f":{registry.port}")
    # Authentication on: basic auth in the realm the start script writes the JAAS section for.
    assert env["KAFKA_REST_AUTHENTICATION_METHOD"] == "BASIC"
    assert env["KAFKA_REST_AUTHENTICATION_REALM"] == "KafkaRest" and env["KAFKA_REST_AUTHENTICATION_ROLES"]
    assert env["REST_PROXY_PASSWORD"].startswith("${REST_PROXY_PASSWORD:?")
    assert rest["command"] == ["bash", "/opt/shekara/rest-proxy-start.sh"]
    assert "./deploy/rest-proxy-start.sh:/opt/shekara/rest-proxy-start.sh:ro" in rest["volumes"]
    assert rest["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "kafka-init": {"condition": "service_completed_successfully"},
        "schema-registry": {"condition": "service_healthy"},
    }
    check = " ".join(rest["healthcheck"]["test"])
    assert "-u" in check and "$$REST_PROXY_PASSWORD" in check and ":8082/v3/clusters" in check


def test_rest_proxy_user_writes_the_source_topics_only() -> None:
    acls = kafka_acls()
    settings = Settings()
    t = settings.topics
    granted = {(g.resource, g.name, g.operation, g.prefixed) for g in acls.grants(settings) if g.user == "rest-proxy"}
    sources = (t.crossings, t.registrations, t.status_changes)
    assert granted == {("topic", n, op, False) for n in sources for op in ("WRITE", "DESCRIBE")}


def run_start_script(tmp_path: Path, password: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "REST_PROXY_USER": "integrator",
        "REST_PROXY_PASSWORD": password,
        "KAFKA_REST_AUTHENTICATION_REALM": "KafkaRest",
        "KAFKA_REST_AUTHENTICATION_ROLES": "integrator",
        "REST_PROXY_AUTH_DIR": str(tmp_path / "auth"),
        "REST_PROXY_DRY_RUN": "1",
    }
    script = REPO / "deploy" / "rest-proxy-start.sh"
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)


def test_rest_proxy_start_script_writes_the_login_and_refuses_placeholders(tmp_path: Path) -> None:
    done = run_start_script(tmp_path, "s3cret-Value_42")
    assert done.returncode == 0, done.stderr
    users = tmp_path / "auth" / "users.properties"
    assert users.read_text() == "integrator: s3cret-Value_42,integrator\n"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    jaas = (tmp_path / "auth" / "jaas.conf").read_text()
    assert jaas.startswith("KafkaRest {") and "org.eclipse.jetty.jaas.spi.PropertyFileLoginModule required" in jaas
    assert f'file="{users}";' in jaas
    for bad, why in [("change-me-rest-proxy", "placeholder"), ("a,b", "commas"), ("", "REST_PROXY_PASSWORD")]:
        refused = run_start_script(tmp_path / bad.replace(",", "_"), bad)
        assert refused.returncode != 0 and why in refused.stderr and len(refused.stderr.splitlines()) == 1, bad


def curl_example() -> tuple[list[str], dict[str, Any]]:
    (block,) = [b for b in blocks("sh") if "/records" in b]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[0] == "curl"
    return words, json.loads(words[words.index("--data") + 1])


def require_every_field(node: Any, value: Any, where: str) -> None:
    """Java Avro's JSON decoder (REST Proxy's) wants every field, and a union's non-null value wrapped."""
    if isinstance(node, list):
        if value is None:
            assert "null" in node, where
            return
        assert isinstance(value, dict) and len(value) == 1, f"{where}: a union value must be wrapped in its type"
        ((branch, inner),) = value.items()
        names = [b if isinstance(b, str) else f"{b.get('namespace', 'kz.shekara')}.{b['name']}" for b in node]
        named = {n.rsplit(".", 1)[-1]: b for n, b in zip(names, node, strict=True)}
        assert branch in names, f"{where}: {branch} is not a branch of {names}"
        require_every_field(named[branch.rsplit(".", 1)[-1]], inner, where)
    elif isinstance(node, dict) and node.get("type") == "record":
        assert isinstance(value, dict), where
        assert set(value) == {f["name"] for f in node["fields"]}, f"{where}: fields {sorted(value)}"
        for f in node["fields"]:
            require_every_field(f["type"], value[f["name"]], f"{where}.{f['name']}".lstrip("."))


def test_curl_example_is_a_valid_v3_produce_request(compose: dict[str, Any]) -> None:
    words, body = curl_example()
    url = urlsplit(next(w for w in words if w.startswith("http")))
    services = compose["services"]
    cluster = services["kafka"]["environment"]["CLUSTER_ID"]
    topic = TopicNames().crossings
    assert url.path == f"/v3/clusters/{cluster}/topics/{topic}/records"
    assert f"{url.hostname}:{url.port}:8082" in services["rest-proxy"]["ports"]
    assert words[words.index("-X") + 1] == "POST" and "Content-Type: application/json" in words
    assert words[words.index("-u") + 1] == "integrator:$REST_PROXY_PASSWORD"
    assert services["rest-proxy"]["environment"]["REST_PROXY_USER"] == "integrator"

    raw = latest_version("Crossing").raw
    data = body["value"]["data"]
    assert isinstance(body["value"]["schema_id"], int) and set(body["value"]) == {"schema_id", "data"}
    require_every_field(raw, data, "")
    # The value in Avro's JSON encoding, read as the Java decoder would (fastavro's reader of that encoding).
    records = list(fastavro.json_reader(io.StringIO(json.dumps(data)), latest_version("Crossing").parsed))
    assert len(records) == 1 and isinstance(records[0], dict)
    record: dict[str, Any] = records[0]
    assert fastavro.validate(record, latest_version("Crossing").parsed, raise_errors=True)

    document = record["traveller"]["document"]
    key = partition_key(document["issuing_country"], document["number"])
    assert body["key"] == {"type": "STRING", "data": key}
    partitions = int(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])
    assert body["partition_id"] == zlib.crc32(key.encode()) % partitions

    # What REST Proxy writes (Confluent framing, schema id from the registry) is admitted by the processors, and
    # is the same event as the doc's other examples.
    registry = Serde(registry_client(f"mock://integrators-{uuid.uuid4().hex}"))
    value = registry.encode_dict("Crossing", record, topic)
    assert value[0] == 0
    admitted = Intake(Settings(), registry).admit(topic, key.encode(), value, now=datetime.now(UTC))
    assert isinstance(admitted, Accepted), admitted
    assert admitted.event.event_id == source_event_id("zhibek-zholy", "ZZ-2026-000001")
    assert admitted.event.event_time == datetime.fromisoformat("2026-09-01T08:15:00+05:00")
