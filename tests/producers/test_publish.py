"""`shekara publish FILE`: JSON lines and Avro container files through the producer client, with every refused
line reported by number and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError, Message
from typer.testing import CliRunner, Result

from producers.client import EventProducer
from producers.publish import Rejection, publish_file, read_events, record_type_name
from schemas.convert import to_avro
from schemas.records import Crossing, DeadLetter, Registration
from schemas.serde import Serde, schema_versions
from schemas.validation import ValidationError, from_json
from shekara.settings import Settings, get_settings
from tests.schemas.test_serde import _consume_all, sample_crossing
from tests.schemas.test_validation import crossing_json


def registration_json(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "record_type": "registration",
        "source_record_id": "EQ-100",
        "event_time": "2025-06-01T10:00:00Z",
        "received_time": "2025-06-01T10:00:05Z",
        "action": "REGISTERED",
        "registration_id": "EQ-100",
        "traveller": crossing_json()["traveller"],
        "host_kind": "HOTEL",
        "host_id": "HOTEL-5",
        "region": "KZ-75",
        "address": "Dostyk 5",
        "valid_from": "2025-06-01",
        "valid_until": "2025-06-05",
        "source_system": "eqonaq",
    }
    obj.update(kw)
    return obj


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def mixed_file(tmp_path: Path) -> Path:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return write_lines(
        tmp_path / "events.jsonl",
        [
            crossing_json(),  # 1 ok
            "{not json",  # 2
            registration_json(),  # 3 ok
            "",  # 4 blank: skipped
            crossing_json(direction="INTO"),  # 5 bad enum
            registration_json(valid_until="2025-05-01"),  # 6 validation: before valid_from
            crossing_json(event_time=future, received_time=future),  # 7 in the future
            {k: v for k, v in crossing_json().items() if k != "record_type"},  # 8 no type
        ],
    )


def test_record_type_names() -> None:
    assert record_type_name("status-change") == record_type_name("StatusChange") == "StatusChange"
    assert record_type_name("crossing") == "Crossing"
    with pytest.raises(ValidationError):
        record_type_name("Alert")  # processors' output, not for integrators


def test_read_events_reports_each_bad_line_by_number(tmp_path: Path) -> None:
    results = list(read_events(mixed_file(tmp_path)))
    assert [e.line for e in results] == [1, 2, 3, 5, 6, 7, 8]
    problems = {e.line: (e.result.field, e.result.message) for e in results if isinstance(e.result, ValidationError)}
    assert set(problems) == {2, 5, 8}  # 6 and 7 parse; their meaning is checked when published
    assert problems[2][0] == "(line)" and "not valid JSON" in problems[2][1]
    assert problems[5] == ("direction", "must be one of ENTRY, EXIT; got 'INTO'")
    assert problems[8][0] == "record_type"
    assert results[1].raw == b"{not json" and results[0].record_type == "Crossing"


@pytest.mark.integration
def test_publish_file_accepts_good_lines_and_reports_bad_ones(settings: Settings, tmp_path: Path) -> None:
    report = publish_file(mixed_file(tmp_path), settings, flush_timeout=15)
    assert (report.read, report.valid, report.sent, report.spooled, report.pending) == (7, 2, 2, 0, 0)
    assert [(r.line, r.field) for r in report.rejected] == [
        (2, "(line)"),
        (5, "direction"),
        (6, "valid_until"),
        (7, "event_time"),
        (8, "record_type"),
    ]
    assert str(report.rejected[2]) == "line 6: valid_until: is before valid_from"
    assert report.dead_lettered == report.dead_letters_sent == 5
    letters = [Serde().decode(m.value(), m.topic()) for m in _consume_all(settings, settings.topics.dead_letter, 5)]
    by_field = {letter.field: letter for letter in letters if isinstance(letter, DeadLetter)}
    assert set(by_field) == {"(line)", "direction", "valid_until", "event_time", "record_type"}
    bad_date = by_field["valid_until"]
    assert bad_date.stage == "validate" and bad_date.source_topic == settings.topics.registrations
    assert bad_date.reason == "events.jsonl line 6: is before valid_from"
    assert bad_date.value == json.dumps(registration_json(valid_until="2025-05-01")).encode()
    assert by_field["(line)"].source_topic == "file:events.jsonl" and by_field["(line)"].value == b"{not json"
    [crossing] = _consume_all(settings, settings.topics.crossings, 1)
    [registration] = _consume_all(settings, settings.topics.registrations, 1)
    assert Serde().decode(crossing.value(), crossing.topic()) == read_events_first(tmp_path)
    assert isinstance(Serde().decode(registration.value(), registration.topic()), Registration)


def read_events_first(tmp_path: Path) -> Any:
    return next(read_events(tmp_path / "events.jsonl")).result


@pytest.mark.integration
def test_publish_avro_container_written_with_an_older_schema(settings: Settings, tmp_path: Path) -> None:
    v1 = schema_versions()["Crossing"][0]
    records = [sample_crossing(event_id=f"avro-{i}", source_record_id=None) for i in range(3)]
    rows = [{k: v for k, v in to_avro(r).items() if k != "source_record_id"} for r in records]
    rows[1]["traveller"]["document"]["number"] = "x1"  # record 2: invalid document number
    path = tmp_path / "crossings.avro"
    with path.open("wb") as fo:
        fastavro.writer(fo, v1.parsed, rows)
    report = publish_file(path, settings, flush_timeout=15, dead_letters=False)
    assert report.valid == report.sent == 2 and report.dead_lettered == 0
    assert report.rejected == [
        Rejection(2, "traveller.document.number", "must be 5-20 letters or digits after removing separators; got 2 "
                  "characters")
    ]  # fmt: skip
    got = {Serde().decode(m.value(), m.topic()) for m in _consume_all(settings, settings.topics.crossings, 2)}
    assert got == {records[0], records[2]}


def test_avro_file_of_a_non_source_record_is_refused(tmp_path: Path) -> None:
    from tests.schemas.test_serde import sample_alert

    path = tmp_path / "alerts.avro"
    with path.open("wb") as fo:
        fastavro.writer(fo, schema_versions()["Alert"][-1].parsed, [to_avro(sample_alert())])
    with pytest.raises(ValidationError, match="record_type"):
        list(read_events(path))


def run_publish(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str, broker_url: str | None = None
) -> Result:
    """`shekara publish ARGS` with `settings` (its broker unless `broker_url`), as an operator runs it."""
    from harness.cli import app

    monkeypatch.setenv("SHEKARA_BROKER_URL", broker_url or settings.broker_url)
    monkeypatch.setenv("SHEKARA_DATA_DIR", str(settings.data_dir))
    for name, topic in settings.topics.model_dump().items():
        monkeypatch.setenv(f"SHEKARA_TOPICS__{name.upper()}", topic)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["publish", *args])
    finally:
        get_settings.cache_clear()


@pytest.mark.integration
def test_cli_prints_counts_and_reasons(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        [
            {k: v for k, v in crossing_json().items() if k != "record_type"},
            {k: v for k, v in crossing_json(traveller={"document": {}}).items() if k != "record_type"},
        ],
    )
    result = run_publish(settings, monkeypatch, str(path), "--type", "crossing", "--flush-timeout", "15")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "line 2: traveller.document.type: is required",
        "read 2: sent 1, rejected 1, spooled 0",
        f"dead letters to {settings.topics.dead_letter}: sent 1, spooled 0",
    ]
    [msg] = _consume_all(settings, settings.topics.crossings, 1)
    assert isinstance(Serde().decode(msg.value(), msg.topic()), Crossing)


BIG_FIELD = 1_500_000  # characters: over the 1 MB message limit that once stopped the whole file


def hostile_file(tmp_path: Path) -> Path:
    """Good lines between every kind of bad line `shekara publish` meets; the expected report is below."""
    lines = [
        json.dumps(crossing_json(event_id="good-1")).encode(),  # 1
        b'{"record_type": "Crossing", "event_id": "caf\xe9"}',  # 2: Latin-1, not UTF-8
        json.dumps(registration_json(source_record_id="EQ-1")).encode(),  # 3
        json.dumps(crossing_json(event_id="s-1", source_system="ala-\ud800")).encode(),  # 4: a lone surrogate
        json.dumps(
            crossing_json(event_id="big", conveyance={"kind": "FLIGHT", "identifier": "X" * BIG_FIELD})
        ).encode(),
        b'{"record_type": "Crossing", "event_id": ',  # 6: cut short
        json.dumps(crossing_json(record_type="Visa")).encode(),  # 7
        b"",  # 8: blank, skipped
        json.dumps(registration_json(valid_until="2025-05-01")).encode(),  # 9: before valid_from
        json.dumps(crossing_json(event_id="good-2", direction="EXIT")).encode(),  # 10
        json.dumps(crossing_json(direction="X" * BIG_FIELD)).encode(),  # 11: a reason quoting a huge value
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


HOSTILE_REJECTIONS = [
    "line 2: (line): not valid UTF-8: byte 0xe9 at byte 45",
    "line 4: source_system: contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text",
    "line 5: conveyance.identifier: ",  # the reason (size) is checked on its own
    "line 6: (line): not valid JSON: Expecting value at column 41",
    "line 7: record_type: must be one of Crossing, Registration, StatusChange; got 'Visa'",
    "line 9: valid_until: is before valid_from",
    "line 11: direction: must be one of ENTRY, EXIT; got 'XXX",
]


def assert_hostile_rejections(lines: list[str]) -> None:
    assert len(lines) == len(HOSTILE_REJECTIONS)
    for line, expected in zip(lines, HOSTILE_REJECTIONS, strict=True):
        assert line.startswith(expected) if expected.endswith((": ", "XXX")) else line == expected, line
    assert len(lines[-1]) < 600 and lines[-1].endswith("…")  # cut: a line on the terminal, a bounded dead letter
    assert "characters" in lines[2] and "limit" in lines[2]  # the field is too long (validation or size check)


@pytest.mark.integration
def test_cli_reports_every_bad_line_and_sends_the_good_ones(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_publish(settings, monkeypatch, str(hostile_file(tmp_path)), "--flush-timeout", "15")
    assert result.exit_code == 1, result.output
    out = result.stdout.splitlines()
    assert_hostile_rejections(out[:-2])
    assert out[-2:] == [
        "read 10: sent 3, rejected 7, spooled 0",
        f"dead letters to {settings.topics.dead_letter}: sent 7, spooled 0",
    ]
    # Exactly the good lines reached their topics, each once.
    crossings = _consume_all(settings, settings.topics.crossings, 3, timeout=5)
    assert sorted(Serde().decode(m.value(), m.topic()).event_id for m in crossings) == ["good-1", "good-2"]
    assert len(_consume_all(settings, settings.topics.registrations, 2, timeout=3)) == 1
    letters = [
        Serde().decode(m.value(), m.topic()) for m in _consume_all(settings, settings.topics.dead_letter, 8, timeout=5)
    ]
    assert sorted(int(letter.reason.split(":")[0].rsplit(" ", 1)[1]) for letter in letters) == [2, 4, 5, 6, 7, 9, 11]
    big = next(letter for letter in letters if letter.field == "conveyance.identifier")
    assert len(big.value) == settings.limits.dead_letter_payload_bytes and "cut to its first" in big.reason


@pytest.mark.integration
def test_dry_run_checks_every_line_and_sends_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No broker at all: a dry run must not need one.
    result = run_publish(
        settings, monkeypatch, "--dry-run", str(hostile_file(tmp_path)), broker_url="kafka://127.0.0.1:9"
    )
    assert result.exit_code == 1, result.output
    out = result.stdout.splitlines()
    assert_hostile_rejections(out[:-1])
    assert out[-1] == "read 10: valid 3, rejected 7 (dry run: nothing sent)"
    good = write_lines(tmp_path / "good.jsonl", [crossing_json(event_id="g1"), registration_json()])
    result = run_publish(settings, monkeypatch, "--dry-run", str(good))
    assert (result.exit_code, result.stdout) == (0, "read 2: valid 2, rejected 0 (dry run: nothing sent)\n")
    for topic in (settings.topics.crossings, settings.topics.registrations, settings.topics.dead_letter):
        assert _consume_all(settings, topic, 1, timeout=2) == []


@pytest.mark.integration
def test_a_file_of_good_lines_exits_0(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_lines(tmp_path / "good.jsonl", [crossing_json(event_id=f"g{i}") for i in range(5)])
    result = run_publish(settings, monkeypatch, str(path), "--flush-timeout", "15")
    assert (result.exit_code, result.stdout) == (0, "read 5: sent 5, rejected 0, spooled 0\n")
    assert len(_consume_all(settings, settings.topics.crossings, 6, timeout=4)) == 5


@pytest.mark.integration
def test_unreachable_broker_spools_and_the_next_run_sends(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines(tmp_path / "good.jsonl", [crossing_json(event_id="g1"), crossing_json(event_id="g2")])
    down = run_publish(settings, monkeypatch, str(path), "--flush-timeout", "2", broker_url="kafka://127.0.0.1:9")
    assert down.exit_code == 3, down.output  # nothing rejected, but nothing delivered either
    spool = settings.spool_dir / "shekara-publish"
    assert down.stdout.splitlines() == [
        "read 2: sent 0, rejected 0, spooled 2",
        f"2 messages wait in the spool at {spool} (the broker did not take them); the next `shekara publish` "
        "sends them first, in order.",
    ]
    bad = write_lines(tmp_path / "bad.jsonl", ["{"])  # its dead letter waits in the spool too
    down = run_publish(settings, monkeypatch, str(bad), "--flush-timeout", "1", broker_url="kafka://127.0.0.1:9")
    assert down.exit_code == 1 and down.stdout.splitlines()[1:3] == [
        "read 1: sent 0, rejected 1, spooled 0",
        f"dead letters to {settings.topics.dead_letter}: sent 0, spooled 1",
    ]
    up = run_publish(settings, monkeypatch, str(write_lines(tmp_path / "none.jsonl", [])), "--flush-timeout", "15")
    assert (up.exit_code, up.stdout.splitlines()) == (
        0,
        ["read 0: sent 0, rejected 0, spooled 0", "the spool sent 3 messages during this run and is empty"],
    )
    assert len(_consume_all(settings, settings.topics.crossings, 3, timeout=4)) == 2
    assert len(_consume_all(settings, settings.topics.dead_letter, 2, timeout=3)) == 1


@pytest.mark.integration
def test_a_delivery_refused_by_the_broker_is_reported_per_event(settings: Settings) -> None:
    """librdkafka reports a broker's refusal (e.g. MSG_SIZE_TOO_LARGE under a smaller broker limit) in the
    delivery report; the embedded broker accepts any size, so its report is handed to the producer here."""
    outcomes: list[tuple[str, str]] = []
    with EventProducer(settings, client_id="refusal") as producer:
        producer.publish(from_json("Crossing", crossing_json()), on_outcome=lambda o, r: outcomes.append((o, r)))
        assert producer.flush(15) == 0
        refused = Message(topic=settings.topics.crossings, value=b"v", key=b"k")
        producer._in_flight += 1  # as produce() counts it; librdkafka then calls back:
        producer._on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), refused, lambda o, r: outcomes.append((o, r)))
        assert producer.stats["failed"] == 1 and producer.pending() == 0
    assert outcomes == [("sent", ""), ("refused", "MSG_SIZE_TOO_LARGE (Broker: Message size too large)")]


def test_read_events_survives_every_kind_of_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "raw.jsonl"
    good, bom = json.dumps(crossing_json()).encode(), "\ufeff".encode()
    path.write_bytes(
        b"\r\n".join([bom + good, b"x" * 5000, good, b"\xff", b"[1]", b'{"a": "\\udc00"}', bom + good, b"x" * 4096])
    )
    events = list(read_events(path, max_line_bytes=4096))
    assert [e.line for e in events] == [1, 2, 3, 4, 5, 6, 7, 8]
    problems = {e.line: str(e.result) for e in events if isinstance(e.result, ValidationError)}
    assert problems == {
        2: "(line): is 5,000 bytes; the limit is 4,096 (not read)",
        4: "(line): not valid UTF-8: byte 0xff at byte 1",
        5: "(line): must be a JSON object; got list",
        6: "a: contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text",
        7: "(line): not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1",  # line 1 only
        8: "(line): not valid JSON: Expecting value at column 1",  # exactly at the limit: read
    }
    assert len(events[1].raw) == 4096  # an oversize line is never held whole


def test_a_damaged_avro_file_is_reported_not_raised(tmp_path: Path) -> None:
    rows = [to_avro(sample_crossing(event_id=f"a{i}")) for i in range(200)]
    path = tmp_path / "c.avro"
    with path.open("wb") as fo:
        fastavro.writer(fo, schema_versions()["Crossing"][-1].parsed, rows, sync_interval=2000)
    data = path.read_bytes()
    path.write_bytes(data[:-50])  # cut inside the last block
    events = list(read_events(path))
    assert all(isinstance(e.result, Crossing) for e in events[:-1]) and len(events) > 1
    last = events[-1].result
    assert isinstance(last, ValidationError) and last.field == "(file)" and "reading stopped" in last.message
    path.write_bytes(data[:4] + b"\x02" + data[5:300])  # the header's metadata map broken
    with pytest.raises(ValidationError, match="not a readable Avro container file"):
        read_events(path)


def test_cli_refuses_an_unknown_type(tmp_path: Path) -> None:
    from harness.cli import app

    path = write_lines(tmp_path / "x.jsonl", [crossing_json()])
    result = CliRunner().invoke(app, ["publish", str(path), "--type", "visa"])
    assert result.exit_code == 2
    assert "record_type: must be one of Crossing, Registration, StatusChange" in result.output
