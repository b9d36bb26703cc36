"""`shekara publish FILE`: JSON lines and Avro container files through the producer client, with every refused
line reported by number and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from typer.testing import CliRunner

from producers.publish import Rejection, publish_file, read_events, record_type_name
from schemas.convert import to_avro
from schemas.records import Crossing, DeadLetter, Registration
from schemas.serde import Serde, schema_versions
from schemas.validation import ValidationError
from shekara.settings import Settings, get_settings
from tests.test_serde import _consume_all, sample_crossing
from tests.test_validation import crossing_json


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
    assert report.accepted == 2 and report.pending == 0 and report.sent == 2 + 5  # events and dead letters
    assert [(r.line, r.field) for r in report.rejected] == [
        (2, "(line)"),
        (5, "direction"),
        (6, "valid_until"),
        (7, "event_time"),
        (8, "record_type"),
    ]
    assert str(report.rejected[2]) == "line 6: valid_until: is before valid_from"
    assert report.dead_lettered == 5
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
    assert report.accepted == 2 and report.dead_lettered == 0
    assert report.rejected == [
        Rejection(2, "traveller.document.number", "must be 5-20 letters or digits after removing separators; got 2 "
                  "characters")
    ]  # fmt: skip
    got = {Serde().decode(m.value(), m.topic()) for m in _consume_all(settings, settings.topics.crossings, 2)}
    assert got == {records[0], records[2]}


def test_avro_file_of_a_non_source_record_is_refused(tmp_path: Path) -> None:
    from tests.test_serde import sample_alert

    path = tmp_path / "alerts.avro"
    with path.open("wb") as fo:
        fastavro.writer(fo, schema_versions()["Alert"][-1].parsed, [to_avro(sample_alert())])
    with pytest.raises(ValidationError, match="record_type"):
        list(read_events(path))


@pytest.mark.integration
def test_cli_prints_counts_and_reasons(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shekara.cli import app

    monkeypatch.setenv("SHEKARA_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("SHEKARA_DATA_DIR", str(settings.data_dir))
    for name, topic in settings.topics.model_dump().items():
        monkeypatch.setenv(f"SHEKARA_TOPICS__{name.upper()}", topic)
    get_settings.cache_clear()
    path = write_lines(
        tmp_path / "c.jsonl",
        [
            {k: v for k, v in crossing_json().items() if k != "record_type"},
            {k: v for k, v in crossing_json(traveller={"document": {}}).items() if k != "record_type"},
        ],
    )
    try:
        result = CliRunner().invoke(app, ["publish", str(path), "--type", "crossing", "--flush-timeout", "15"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "rejected line 2: traveller.document.type: is required" in result.output
    assert f"accepted 1, rejected 1 (sent to {settings.topics.dead_letter})" in result.output
    assert "sent 2, spooled 0, pending 0" in result.output  # the event and its dead letter
    [msg] = _consume_all(settings, settings.topics.crossings, 1)
    assert isinstance(Serde().decode(msg.value(), msg.topic()), Crossing)


def test_cli_refuses_an_unknown_type(tmp_path: Path) -> None:
    from shekara.cli import app

    path = write_lines(tmp_path / "x.jsonl", [crossing_json()])
    result = CliRunner().invoke(app, ["publish", str(path), "--type", "visa"])
    assert result.exit_code == 2
    assert "record_type: must be one of Crossing, Registration, StatusChange" in result.output
